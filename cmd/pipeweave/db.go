package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/internal/database"
)

// dbCommand implements `pipeweave db init|migrate|status|reset`; the default of --url is
// DATABASE_URL, read through getenv.
func dbCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return unknownSubcommand("db", args)
	}
	sub := args[0]
	fs := flag.NewFlagSet("db "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	withHelp(fs)
	// DATABASE_URL, or upstream's DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD, DB_SSL.
	envURL, envErr := core.DatabaseURLFromEnv(getenv)
	// The default is applied after parsing, so that a usage message never shows the URL (and
	// its password).
	url := fs.String("url", "", "PostgreSQL URL (default $DATABASE_URL, else one made of $DB_HOST, $DB_PORT, $DB_NAME, $DB_USER, $DB_PASSWORD, $DB_SSL)")
	yes := fs.Bool("yes", false, "confirm reset: it drops every PipeWeave table and its data")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *url == "" {
		*url = envURL
	}
	if *url == "" {
		if envErr != nil {
			return fmt.Errorf("db %s: %w", sub, envErr)
		}
		return fmt.Errorf("db %s: --url (or DATABASE_URL, or DB_HOST) is required", sub)
	}
	pool, err := database.Open(ctx, *url, database.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer pool.Close()
	switch sub {
	case "init", "migrate":
		applied, err := migrate.Up(ctx, pool)
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			fmt.Fprintln(stdout, "schema is up to date")
		}
		for _, v := range applied {
			fmt.Fprintf(stdout, "applied migration %03d\n", v)
		}
	case "status":
		list, err := migrate.Status(ctx, pool)
		if err != nil {
			return err
		}
		for _, m := range list {
			state := "pending"
			if m.AppliedAt != nil {
				state = "applied " + m.AppliedAt.UTC().Format("2006-01-02T15:04:05Z")
			}
			fmt.Fprintf(stdout, "%03d  %-30s %s\n", m.Version, m.Name, state)
		}
	case "reset":
		if !*yes {
			return fmt.Errorf("db reset drops every PipeWeave table and its data: run it again with --yes to confirm")
		}
		if err := migrate.Reset(ctx, pool, true); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "schema dropped and re-created")
	default:
		return fmt.Errorf("unknown db command %q (init, migrate, status, reset)", sub)
	}
	return nil
}
