package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/pipeweave/pipeweave/core"
	// serve, dev and bench open whichever providers STORAGE_BACKENDS names: link them all.
	_ "github.com/pipeweave/pipeweave/core/storage/drivers"
)

// serveCommand runs the orchestrator configured from the environment variables read through
// getenv, until ctx ends.
func serveCommand(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	withHelp(fs)
	migrateFirst := fs.Bool("migrate", false, "apply pending schema migrations before serving")
	dbWait := fs.Duration("db-wait", 30*time.Second, "how long to wait for the database to answer at start-up before giving up (exit 1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := core.ConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	setServerGC(getenv)
	log, err := newLogger(stderr, false, getenv)
	if err != nil {
		return err
	}
	// Start-up checks, in this order and before anything is created or announced: the port,
	// the database, its schema.
	addr := fmt.Sprintf(":%d", cfg.Port)
	ln, err := listenPort(addr, "stop the process that holds it or set PORT")
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := waitForDatabase(ctx, cfg.DatabaseURL, *dbWait); err != nil {
		return err
	}
	if *migrateFirst {
		if err := migrateURL(ctx, cfg.DatabaseURL); err != nil {
			return errors.New(errLine(err))
		}
	}
	if err := checkSchema(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	o, err := core.New(ctx, cfg, core.Options{Logger: log})
	if err != nil {
		return err
	}
	defer o.Close()
	// The listener is bound and Serve accepts from it right away: the server is serving.
	log.Info("orchestrator listening", "addr", ln.Addr().String(), "mode", cfg.Mode, "maxConcurrency", cfg.MaxConcurrency)
	err = o.Serve(ctx, ln)
	log.Info("orchestrator stopped")
	return err
}
