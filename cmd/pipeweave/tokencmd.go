package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pipeweave/pipeweave/core/token"
)

// tokenCommand prints a service key or a registration token (docs/protocol.md, "Keys"):
// pipeweave token service --service ID [--secret S] and pipeweave token register --service ID
// --body FILE|- [--service-key K | --secret S]. Defaults are read through getenv; "-" reads the
// body from stdin.
func tokenCommand(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || (args[0] != "register" && args[0] != "service") {
		return unknownSubcommand("token", args)
	}
	fs := flag.NewFlagSet("token "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	withHelp(fs)
	secret := fs.String("secret", "", "master secret (default $PIPEWEAVE_SECRET_KEY)")
	service := fs.String("service", "", "service id")
	var serviceKey, bodyPath *string
	if args[0] == "register" {
		serviceKey = fs.String("service-key", "", "the service's key, 64 hex (default $PIPEWEAVE_SERVICE_KEY)")
		bodyPath = fs.String("body", "", "file holding the exact registration body, or - for stdin")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token %s: unexpected argument %q", args[0], fs.Arg(0))
	}
	if *service == "" {
		return fmt.Errorf("token %s: --service is required", args[0])
	}
	if args[0] == "service" {
		if *secret == "" {
			*secret = getenv("PIPEWEAVE_SECRET_KEY")
		}
		if *secret == "" {
			return fmt.Errorf("token service: no secret: give --secret or set PIPEWEAVE_SECRET_KEY to the orchestrator's master secret (%s)", devSecretHint(getenv))
		}
		key, err := token.ServiceKey(*secret, *service)
		if err != nil {
			return fmt.Errorf("token service: --secret: %w", err)
		}
		fmt.Fprintln(stdout, hex.EncodeToString(key))
		return nil
	}

	// token register: the service key from --service-key, else from --secret, else from the
	// environment (PIPEWEAVE_SERVICE_KEY first).
	if *serviceKey != "" && *secret != "" {
		return errors.New("token register: give --service-key or --secret, not both")
	}
	if *serviceKey == "" && *secret == "" {
		if *serviceKey = getenv("PIPEWEAVE_SERVICE_KEY"); *serviceKey == "" {
			*secret = getenv("PIPEWEAVE_SECRET_KEY")
		}
	}
	if *serviceKey == "" && *secret == "" {
		return fmt.Errorf("token register: no key to sign with: give --service-key or set PIPEWEAVE_SERVICE_KEY (the service's key, "+
			"from pipeweave token service), or give --secret or set PIPEWEAVE_SECRET_KEY (the orchestrator's master secret; %s)", devSecretHint(getenv))
	}
	var svc []byte
	var err error
	if *serviceKey != "" {
		if svc, err = token.ParseServiceKey(*serviceKey); err != nil {
			return fmt.Errorf("token register: --service-key: %w", err)
		}
	} else if svc, err = token.ServiceKey(*secret, *service); err != nil {
		return fmt.Errorf("token register: --secret: %w", err)
	}
	if *bodyPath == "" {
		return errors.New("token register: --body is required: the token is bound to the exact bytes of the registration body (send them as they are, e.g. curl --data-binary @FILE)")
	}
	var body []byte
	if *bodyPath == "-" {
		body, err = io.ReadAll(stdin)
	} else {
		body, err = os.ReadFile(*bodyPath)
	}
	if err != nil {
		return fmt.Errorf("token register: --body: %w", err)
	}
	keys, err := token.ServiceKeys(svc)
	if err != nil {
		return fmt.Errorf("token register: %w", err)
	}
	tok, err := keys.SignRegistration(*service, body, time.Now())
	if err != nil {
		return fmt.Errorf("token register: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// devSecretHint says where `pipeweave dev` keeps the master secret, for the error of a token
// command given none.
func devSecretHint(getenv func(string) string) string {
	path := filepath.Join(devDir(getenv), "secret")
	return fmt.Sprintf("pipeweave dev keeps it in %s: --secret \"$(cat %s)\"", path, path)
}
