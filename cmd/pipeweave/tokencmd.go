package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/pipeweave/pipeweave/core/token"
)

// tokenCommand prints a registration token, for trying the API by hand:
// pipeweave token register --service ID [--secret S] (default $PIPEWEAVE_SECRET_KEY, read
// through getenv).
func tokenCommand(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || args[0] != "register" {
		fmt.Fprintln(stderr, "usage: pipeweave token register --service ID [--secret S]")
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("token register", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", getenv("PIPEWEAVE_SECRET_KEY"), "shared secret (default $PIPEWEAVE_SECRET_KEY)")
	service := fs.String("service", "", "service id the token is for")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *service == "" {
		return fmt.Errorf("token register: --service is required")
	}
	keys, err := token.DeriveKeys(*secret)
	if err != nil {
		return fmt.Errorf("token register: --secret: %w", err)
	}
	tok, err := keys.SignRegistration(*service, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
