package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/internal/database"
)

// The start-up checks of serve and dev, in the order they run: the port is bound first, then
// the database is reached, then its schema is checked; nothing is created, started or
// announced before all three passed. Each failure is one line.

// listenPort binds addr. A port in use is said in one line that names it; hint, when set,
// says what to do about it.
func listenPort(addr, hint string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		_, port, _ := net.SplitHostPort(addr)
		msg := fmt.Sprintf("port %s is already in use (listen on %s)", port, addr)
		if hint != "" {
			msg += ": " + hint
		}
		return nil, errors.New(msg)
	}
	return nil, fmt.Errorf("listen on %s: %s", addr, errLine(err))
}

// dbHost names the server of a database URL for messages: host:port/database, never the
// user's password.
func dbHost(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "(an unparsable DATABASE_URL)"
	}
	host := cfg.Host
	if !strings.HasPrefix(host, "/") { // not a Unix socket directory
		host = net.JoinHostPort(host, strconv.Itoa(int(cfg.Port)))
	}
	return host + "/" + cfg.Database
}

// waitForDatabase connects to url until it answers, for at most wait, retrying with a
// growing pause while the failure is one that may pass (the server not up yet). A failure
// that will not pass by waiting (a wrong password, a missing database) ends it at once.
func waitForDatabase(ctx context.Context, url string, wait time.Duration) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %s", errLine(err))
	}
	deadline := time.Now().Add(wait)
	pause := 100 * time.Millisecond
	for {
		left := time.Until(deadline)
		cfg.ConnectTimeout = min(max(left, time.Second), 5*time.Second)
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("stopped while waiting for the database at %s", dbHost(url))
		}
		if !errors.Is(database.Interpret(err), database.ErrUnavailable) {
			return fmt.Errorf("cannot use the database at %s: %s", dbHost(url), errLine(err))
		}
		if time.Until(deadline) <= 0 {
			return fmt.Errorf("the database at %s is not reachable (waited %s, --db-wait): %s", dbHost(url), wait, errLine(err))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while waiting for the database at %s", dbHost(url))
		case <-time.After(min(pause, max(time.Until(deadline), 0))):
		}
		pause = min(pause*2, 2*time.Second)
	}
}

// checkSchema compares the database's schema with this binary's migrations: a missing or
// older schema names the commands that migrate it; a newer one is refused.
func checkSchema(ctx context.Context, url string) error {
	pool, err := database.Open(ctx, url, database.Options{MaxConns: 1})
	if err != nil {
		return err
	}
	defer pool.Close()
	switch err := migrate.Verify(ctx, pool); {
	case errors.Is(err, migrate.ErrSchema):
		return fmt.Errorf("the database at %s %w", dbHost(url), err)
	case err != nil:
		return fmt.Errorf("check the schema of the database at %s: %s", dbHost(url), errLine(err))
	}
	return nil
}

// errLine is err's message on one line, so that a start-up failure stays one line.
func errLine(err error) string { return apiclient.OneLine(err.Error()) }
