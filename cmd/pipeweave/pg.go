package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/pipeweave/pipeweave/internal/pgcluster"
)

// settingsFlag collects repeated --set name=value flags.
type settingsFlag map[string]string

func (s settingsFlag) String() string {
	names := make([]string, 0, len(s))
	for name := range s {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, name+"="+s[name])
	}
	return strings.Join(parts, ",")
}

func (s settingsFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	s[strings.TrimSpace(name)] = value
	return nil
}

// pgCommand implements `pipeweave pg start|stop|url`: a private PostgreSQL cluster in a
// directory, for development and the test suite.
func pgCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "start" && args[0] != "stop" && args[0] != "url") {
		return unknownSubcommand("pg", args)
	}
	sub := args[0]
	fs := flag.NewFlagSet("pg "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	withHelp(fs)
	dir := fs.String("dir", "", "directory of the cluster (required)")
	port := new(int)
	settings := settingsFlag{}
	if sub == "start" {
		fs.IntVar(port, "port", 0, "TCP port on 127.0.0.1 (default: a free one, remembered in DIR)")
		fs.Var(settings, "set", "server setting `name=value`, such as fsync=off (repeatable)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("pg %s: unexpected arguments %q", sub, fs.Args())
	}
	if *dir == "" {
		return fmt.Errorf("pg %s: --dir is required", sub)
	}

	switch sub {
	case "start":
		c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: *dir, Port: *port, Settings: settings})
		if err != nil {
			return fmt.Errorf("pg start: %w", err)
		}
		fmt.Fprintf(stderr, "PostgreSQL is running from %s (log: %s)\n", c.DataDir(), c.LogFile())
		fmt.Fprintln(stdout, c.URL("postgres"))
	case "stop":
		c, err := pgcluster.Lookup(*dir)
		if errors.Is(err, pgcluster.ErrNotInitialized) {
			fmt.Fprintf(stderr, "no PostgreSQL cluster in %s: nothing to stop\n", *dir)
			return nil
		}
		if err != nil {
			return fmt.Errorf("pg stop: %w", err)
		}
		if err := c.Stop(ctx); err != nil {
			return fmt.Errorf("pg stop: %w", err)
		}
	case "url":
		c, err := pgcluster.Lookup(*dir)
		if err != nil {
			return fmt.Errorf("pg url: %w", err)
		}
		if c.Port() == 0 {
			return fmt.Errorf("pg url: the cluster in %s has no port yet: start it with `pipeweave pg start --dir %s`", *dir, *dir)
		}
		fmt.Fprintln(stdout, c.URL("postgres"))
	}
	return nil
}
