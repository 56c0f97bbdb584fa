package dbsqlc

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// The statements of the benchmark (pipeweave bench) that sqlc cannot generate: three read the
// cumulative statistics views, which its catalog does not know, one is a VACUUM, and one is a COPY, which as a
// generated :copyfrom query would add CopyFrom to DBTX and so to every executor.

// ForceStatsFlush makes this session report its statistics at the end of the statement instead
// of up to a second later.
func (q *Queries) ForceStatsFlush(ctx context.Context, db DBTX) error {
	_, err := db.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
	return err
}

// DatabaseTransactions reads the transactions committed and rolled back in this database
// (pg_stat_database's xact_commit + xact_rollback) as the sessions have reported them so far: a
// busy session reports at most once a second, an idle one within 10 s, one that disconnects as
// it ends.
func (q *Queries) DatabaseTransactions(ctx context.Context, db DBTX) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, `SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
	return n, err
}

// OlderSessions counts the client sessions on this database besides this one that started
// before since, not counting those whose last statement was ListenReady's LISTEN (the
// standalone loops' notification connections, which run no transactions while they wait).
func (q *Queries) OlderSessions(ctx context.Context, db DBTX, since time.Time) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND backend_start < $1 AND query NOT LIKE '%LISTEN pipeweave_ready%'`, since).Scan(&n)
	return n, err
}

// VacuumRuns vacuums and analyzes task_runs, as autovacuum would some time after a bulk load.
func (q *Queries) VacuumRuns(ctx context.Context, db DBTX) error {
	_, err := db.Exec(ctx, `VACUUM (ANALYZE) task_runs`)
	return err
}

// CopyDBTX is what runs a COPY: a pool, a connection or a transaction.
type CopyDBTX interface {
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// PendingRunColumns are the columns of each row CopyPendingRuns copies, in order.
var PendingRunColumns = []string{"id", "task_id", "status", "priority", "available_at", "input_path", "code_version", "code_hash"}

// CopyPendingRuns inserts the task runs of src (rows of PendingRunColumns) with COPY and returns
// how many it copied.
func (q *Queries) CopyPendingRuns(ctx context.Context, db CopyDBTX, src pgx.CopyFromSource) (int64, error) {
	return db.CopyFrom(ctx, pgx.Identifier{"task_runs"}, PendingRunColumns, src)
}
