package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/pipeweave/pipeweave/core"
)

func serveCommand(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	migrateFirst := fs.Bool("migrate", false, "apply pending schema migrations before serving")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := core.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, false)
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
