// Package database opens pgx connection pools configured for PipeWeave: the pipeweave
// schema first on the search path and a pool size chosen by the caller.
package database

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pipeweave/pipeweave/core/migrate"
)

// Options tune a pool. Zero values pick the defaults.
type Options struct {
	// MaxConns caps the connections of this process (default 10).
	MaxConns int32
	// MinConns keeps that many connections open when idle (default 0).
	MinConns int32
}

// Config parses url and returns a pool configuration with the PipeWeave search path.
func Config(url string, opts Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = migrate.Schema + ", public"
	cfg.ConnConfig.RuntimeParams["application_name"] = "pipeweave"
	cfg.MaxConns = 10
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	cfg.MinConns = opts.MinConns
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 30 * time.Second
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	return cfg, nil
}

// Open creates a pool for url. It does not wait for the database to answer, so a server
// can start while PostgreSQL is still down and recover when it comes back.
func Open(ctx context.Context, url string, opts Options) (*pgxpool.Pool, error) {
	cfg, err := Config(url, opts)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	return pool, nil
}

// Unavailable reports whether err means the database cannot be reached or refuses work for
// now (connection failures, too many connections, shutting down, starting up): the answer is
// 503, not 500.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || // connection exception
			pe.Code == "53300" || // too many connections
			pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" // shutting down, cannot connect now
	}
	// A file system error (an os error wraps a syscall.Errno, which satisfies net.Error) is
	// never the database's: object storage on a local disk fails that way.
	var pathErr *fs.PathError
	var linkErr *os.LinkError
	if errors.As(err, &pathErr) || errors.As(err, &linkErr) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}
