package database_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/testdb"
)

func TestTransactionsCountsEndedSessions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := testdb.NewURL(t)
	pool, err := database.Open(ctx, url, database.Options{MaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	before, settled, err := database.Transactions(ctx, pool, time.Now(), 10*time.Second)
	require.NoError(t, err)
	require.True(t, settled)

	// Another session runs transactions and still holds them unreported when its pool resets.
	other, err := database.Open(ctx, url, database.Options{MaxConns: 1})
	require.NoError(t, err)
	t.Cleanup(other.Close)
	for range 5 {
		_, err := other.Exec(ctx, "SELECT 1")
		require.NoError(t, err)
	}
	since := time.Now()
	other.Reset()
	after, settled, err := database.Transactions(ctx, pool, since, 10*time.Second)
	require.NoError(t, err)
	require.True(t, settled, "the other session ended")
	require.GreaterOrEqual(t, after-before, int64(5), "the other session's transactions are counted")
}

func TestInsertFutureRuns(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testdb.New(t)
	at := time.Now().Add(24 * time.Hour)
	require.NoError(t, database.InsertFutureRuns(ctx, pool, "noop", 1, "h", at, 50))
	require.NoError(t, database.InsertFutureRuns(ctx, pool, "noop", 1, "h", at, 0))
	var pending, ready, ids int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE available_at <= now()),
		count(DISTINCT id) FROM task_runs WHERE task_id = 'noop' AND input_path = 'standalone/' || id || '/input.json'`).Scan(&pending, &ready, &ids))
	require.Equal(t, []int{50, 0, 50}, []int{pending, ready, ids})
}
