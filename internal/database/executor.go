package database

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Executor runs statements on a pool or in a transaction alike (it is the DBTX of the
// generated queries, package internal/dbsqlc). The ones this package makes report failures as
// the sentinels ([ErrNotFound], [ErrUnavailable], [ErrConflict]).
type Executor interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// DB is a pool as an [Executor] that also starts transactions.
type DB struct {
	executor
	pool *pgxpool.Pool
}

// New makes pool a [DB].
func New(pool *pgxpool.Pool) *DB { return &DB{executor: executor{pool}, pool: pool} }

// Pool returns the pool under db, for what is not a statement (LISTEN connections, migrations).
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return interpretError(db.pool.Ping(ctx)) }

// WithConn runs fn on one connection of the pool, held until fn returns: its statements
// autocommit one by one, all on that connection's server process.
func (db *DB) WithConn(ctx context.Context, fn func(x Executor) error) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return interpretError(err)
	}
	defer conn.Release()
	return fn(executor{conn})
}

// raw is what pgxpool.Pool and pgx.Tx both are.
type raw interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// executor interprets the errors of a pool or a transaction.
type executor struct{ db raw }

// Exec implements [Executor].
func (x executor) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := x.db.Exec(ctx, sql, args...)
	return tag, interpretError(err)
}

// Query implements [Executor].
func (x executor) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	r, err := x.db.Query(ctx, sql, args...)
	if err != nil {
		return r, interpretError(err)
	}
	return rows{r}, nil
}

// QueryRow implements [Executor].
func (x executor) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return row{x.db.QueryRow(ctx, sql, args...)}
}

// SendBatch implements [Executor].
func (x executor) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return batchResults{x.db.SendBatch(ctx, b)}
}

type row struct{ pgx.Row }

func (r row) Scan(dest ...any) error { return interpretError(r.Row.Scan(dest...)) }

type rows struct{ pgx.Rows }

func (r rows) Err() error             { return interpretError(r.Rows.Err()) }
func (r rows) Scan(dest ...any) error { return interpretError(r.Rows.Scan(dest...)) }

type batchResults struct{ pgx.BatchResults }

func (b batchResults) Exec() (pgconn.CommandTag, error) {
	tag, err := b.BatchResults.Exec()
	return tag, interpretError(err)
}

func (b batchResults) Query() (pgx.Rows, error) {
	r, err := b.BatchResults.Query()
	if err != nil {
		return r, interpretError(err)
	}
	return rows{r}, nil
}

func (b batchResults) QueryRow() pgx.Row { return row{b.BatchResults.QueryRow()} }

func (b batchResults) Close() error { return interpretError(b.BatchResults.Close()) }
