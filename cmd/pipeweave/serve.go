package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/pipeweave/pipeweave/core"
)

// serveCommand runs the orchestrator configured from the environment variables read through
// getenv, until ctx ends.
func serveCommand(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	withHelp(fs)
	migrateFirst := fs.Bool("migrate", false, "apply pending schema migrations before serving")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := core.ConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, false, getenv)
	if err != nil {
		return err
	}
	if *migrateFirst {
		if err := migrateURL(ctx, cfg.DatabaseURL); err != nil {
			return err
		}
	}
	o, err := core.New(ctx, cfg, core.Options{Logger: log})
	if err != nil {
		return err
	}
	defer o.Close()
	addr := fmt.Sprintf(":%d", cfg.Port)
	log.Info("orchestrator listening", "addr", addr, "mode", cfg.Mode, "maxConcurrency", cfg.MaxConcurrency)
	return o.ListenAndServe(ctx, addr)
}
