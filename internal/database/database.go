// Package database is the data layer's hand-written half: it opens pgx connection pools
// configured for PipeWeave (the pipeweave schema first on the search path, a pool size chosen
// by the caller), runs statements on a pool or in a transaction through an [Executor] that
// reports failures as a few sentinel errors, and gives the tools their read-only queries. The
// statements themselves, and the code sqlc generates from them, are package internal/dbsqlc.
package database

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema is the PostgreSQL schema that holds every PipeWeave table and function: first on the
// search path of every pool, created and filled by core/migrate.
const Schema = "pipeweave"

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
	cfg.ConnConfig.RuntimeParams["search_path"] = Schema + ", public"
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
