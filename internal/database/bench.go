package database

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/oklog/ulid/v2"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// Transactions returns how many transactions have been committed or rolled back in pool's
// database so far (pg_stat_database's xact_commit + xact_rollback). The statistics are
// reported by each session on its own schedule (a busy one at most once a second, an idle one
// within 10 s) and as it ends, so a caller that wants every transaction up to now counted
// closes the connections of the other sessions (pgxpool's Reset) and passes the time before
// it as since: Transactions waits, up to wait, until every session that started before since
// has ended, and reads the figure anyway after that, saying so with settled false. Its own
// session reports its statistics first. pool should hold a single connection, or its other
// idle ones count as sessions that never end.
func Transactions(ctx context.Context, pool *pgxpool.Pool, since time.Time, wait time.Duration) (n int64, settled bool, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, false, interpretError(err)
	}
	defer conn.Release()
	deadline := time.Now().Add(wait)
	for {
		var older int64
		if older, err = queries.OlderSessions(ctx, conn, since); err != nil {
			return 0, false, fmt.Errorf("count the sessions still open: %w", interpretError(err))
		}
		if older == 0 {
			settled = true
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := queries.ForceStatsFlush(ctx, conn); err != nil {
		return 0, false, fmt.Errorf("flush the statistics: %w", interpretError(err))
	}
	if n, err = queries.DatabaseTransactions(ctx, conn); err != nil {
		return 0, false, fmt.Errorf("read the transaction count: %w", interpretError(err))
	}
	return n, settled, nil
}

// InsertFutureRuns inserts n pending runs of taskID (its code version and hash as given, the
// default priority 100) that become ready only at availableAt, with COPY: the benchmark's
// pre-filled queue, vacuumed and analyzed. Their inputs are not stored (a run reads its input
// only when dispatched).
func InsertFutureRuns(ctx context.Context, pool *pgxpool.Pool, taskID string, codeVersion int, codeHash string, availableAt time.Time, n int) error {
	entropy := ulid.Monotonic(rand.Reader, 0)
	now := ulid.Timestamp(time.Now())
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		i++
		id := "trun_" + strings.ToLower(ulid.MustNew(now, entropy).String())
		return []any{id, taskID, "pending", 100, availableAt, protocol.StandaloneInputPath(id), codeVersion, codeHash}, nil
	})
	copied, err := queries.CopyPendingRuns(ctx, pool, src)
	if err != nil {
		return fmt.Errorf("copy %d pending runs: %w", n, interpretError(err))
	}
	if copied != int64(n) {
		return fmt.Errorf("copy %d pending runs: %d copied", n, copied)
	}
	// The queue is measured as it stands once autovacuum has seen the load, not while it
	// vacuums and analyzes a million new rows in the middle of the measurement.
	if err := queries.VacuumRuns(ctx, pool); err != nil {
		return fmt.Errorf("vacuum the copied runs: %w", interpretError(err))
	}
	return nil
}
