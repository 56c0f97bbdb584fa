package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/pgcluster"
)

// crashableDB is a PostgreSQL cluster of the test's own, with default durability, that the test
// crashes and restarts (the shared test cluster runs with synchronous_commit off, where nothing
// is durable before the WAL writer's next round).
type crashableDB struct {
	opts    pgcluster.Options
	cluster *pgcluster.Cluster
}

func startCrashableDB(t *testing.T) *crashableDB {
	t.Helper()
	dir := t.TempDir()
	// Open to the unprivileged account that runs postgres when the tests run as root.
	require.NoError(t, os.Chmod(dir, 0o755))
	db := &crashableDB{opts: pgcluster.Options{Dir: filepath.Join(dir, "data"), Attached: true, Settings: map[string]string{
		// A crash loses the WAL still in the server's buffers. The WAL writer writes it out
		// every wal_writer_delay (and when a page fills): here as seldom as it can, so that
		// what an asynchronous commit left in the buffers is still only there at the crash.
		// fsync stays off: an immediate shutdown loses what was not written, not what was
		// written and not yet flushed to the disk, so the test does not need the fsyncs.
		"wal_writer_delay": "10s",
		"fsync":            "off",
		"full_page_writes": "off",
		"max_connections":  "40",
	}}}
	db.restart(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = db.cluster.Stop(ctx)
	})
	return db
}

// restart starts the cluster (after a crash: PostgreSQL recovers from the WAL on disk).
func (db *crashableDB) restart(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, db.opts)
	require.NoError(t, err)
	db.cluster = c
}

// crash shuts the server down as a crash would (pgcluster.Crash) and starts it again.
func (db *crashableDB) crash(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, db.cluster.Crash(ctx))
	db.restart(t)
}

// pool opens a pool on the cluster, closed when the test ends.
func (db *crashableDB) pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := database.Open(context.Background(), db.cluster.URL("postgres"), database.Options{MaxConns: 8})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// TestDatabaseCrashKeepsClaimsAndAnswers crashes PostgreSQL (an immediate shutdown, which loses
// the WAL not yet written) right after a claim returns, and again right after callbacks are
// answered. A claim authorises a dispatch: one lost in the crash would be taken again under
// the same lease and its run dispatched twice in the same attempt, so the claimed runs must
// still be dispatching under their lease after the restart. A callback answered as applied
// must be completed after the restart (issue 13: a crash between a callback's arrival and its
// commit loses nothing the worker was told succeeded). With the claim's commit asynchronous, as
// it was, the first check fails: the runs are pending again with lease 0.
func TestDatabaseCrashKeepsClaimsAndAnswers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := startCrashableDB(t)
	pool := db.pool(t)
	_, err := migrate.Up(ctx, pool)
	require.NoError(t, err)
	h := newHarnessOn(t, pool, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(3)}})
	ids := h.enqueue(t, "t", 0, 4)
	claimed, err := h.eng.Claim(ctx, 3)
	require.NoError(t, err)
	require.Len(t, claimed, 3)

	db.crash(t)
	h = newHarnessOn(t, db.pool(t), Config{})
	byID := map[string]Claimed{}
	for _, c := range claimed {
		byID[c.RunID] = c
	}
	for _, id := range ids {
		r := h.run(t, id)
		c, ok := byID[id]
		if !ok {
			require.Equal(t, "pending", r.Status, "the run left unclaimed")
			continue
		}
		require.Equal(t, "dispatching", r.Status, "a claim answered before the crash is kept")
		require.Equal(t, c.Lease, r.Lease)
		require.Equal(t, c.Attempt, r.Attempt)
	}
	// The sweep of the restarted orchestrator would take the unanswered dispatches back under
	// a new lease; here their workers call back before that.
	for i, c := range claimed {
		cb := success()
		if i == 2 {
			cb = &protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "boom"}
		}
		res, err := h.eng.Callback(ctx, call(c), cb)
		require.NoError(t, err)
		require.True(t, res.Applied)
	}

	db.crash(t)
	h = newHarnessOn(t, db.pool(t), Config{})
	for i, c := range claimed {
		r := h.run(t, c.RunID)
		if i == 2 {
			require.Equal(t, "pending", r.Status, "the failed attempt's retry")
			require.Equal(t, 2, r.Attempt)
			continue
		}
		require.Equal(t, "completed", r.Status, "a callback answered before the crash is kept")
	}
}
