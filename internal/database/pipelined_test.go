package database_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/testdb"
)

// newCounterDB opens a one-connection DB on a fresh database with a table of counters.
func newCounterDB(t *testing.T, conns int32) (*database.DB, *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	pool, err := database.Open(ctx, testdb.NewURL(t), database.Options{MaxConns: conns})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, `CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL CHECK (n >= 0))`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO counters VALUES (1, 0), (2, 0)`)
	require.NoError(t, err)
	return database.New(pool), pool
}

func counter(t *testing.T, pool *pgxpool.Pool, id int) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT n FROM counters WHERE id = $1`, id).Scan(&n))
	return n
}

// txStatus is the transaction status of the pool's (only) connection: 'I' when no transaction
// is left open on it. pgxpool destroys a connection released inside a transaction, and the
// next Acquire would then get a new, idle one; so the pool must still be on its first.
func txStatus(t *testing.T, pool *pgxpool.Pool) byte {
	t.Helper()
	c, err := pool.Acquire(t.Context())
	require.NoError(t, err)
	defer c.Release()
	require.EqualValues(t, 1, pool.Stat().NewConnsCount(), "the connection was replaced: one was released inside a transaction")
	return c.Conn().PgConn().TxStatus()
}

func TestInTxCommitsAndRollsBack(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, pool := newCounterDB(t, 1)

	// Each kind of first statement begins the transaction; later ones run in it.
	for _, first := range []string{"exec", "query", "queryrow", "batch"} {
		err := db.InTx(ctx, func(tx database.Executor) error {
			switch first {
			case "exec":
				tag, err := tx.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id = 1`)
				require.NoError(t, err)
				require.EqualValues(t, 1, tag.RowsAffected(), "the first statement's own tag")
			case "query":
				rows, err := tx.Query(ctx, `UPDATE counters SET n = n + 1 WHERE id = 1 RETURNING n`)
				require.NoError(t, err)
				require.True(t, rows.Next())
				rows.Close()
				require.NoError(t, rows.Err())
			case "queryrow":
				var n int
				require.NoError(t, tx.QueryRow(ctx, `UPDATE counters SET n = n + 1 WHERE id = 1 RETURNING n`).Scan(&n))
			case "batch":
				b := &pgx.Batch{}
				b.Queue(`UPDATE counters SET n = n + 1 WHERE id = 1`)
				b.Queue(`SELECT n FROM counters WHERE id = 1`)
				br := tx.SendBatch(ctx, b)
				tag, err := br.Exec()
				require.NoError(t, err)
				require.EqualValues(t, 1, tag.RowsAffected(), "the batch's results start at its own first statement")
				var n int
				require.NoError(t, br.QueryRow().Scan(&n))
				require.Equal(t, 4, n, "the second statement sees the first")
				require.NoError(t, br.Close())
			}
			var inTx bool
			require.NoError(t, tx.QueryRow(ctx, `SELECT now() = statement_timestamp() IS NOT TRUE`).Scan(&inTx))
			require.True(t, inTx, "the second statement runs in the transaction the first began")
			_, err := tx.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id = 2`)
			return err
		})
		require.NoError(t, err, first)
	}
	require.Equal(t, 4, counter(t, pool, 1))
	require.Equal(t, 4, counter(t, pool, 2))

	// An error from fn rolls back everything, the first statement included.
	boom := errors.New("boom")
	err := db.InTx(ctx, func(tx database.Executor) error {
		_, err := tx.Exec(ctx, `UPDATE counters SET n = n + 10 WHERE id = 1`)
		require.NoError(t, err)
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.Equal(t, 4, counter(t, pool, 1))
	require.Equal(t, byte('I'), txStatus(t, pool), "nothing is left open on the connection")

	// A panic rolls back too, and goes on.
	require.Panics(t, func() {
		_ = db.InTx(ctx, func(tx database.Executor) error {
			_, _ = tx.Exec(ctx, `UPDATE counters SET n = n + 10 WHERE id = 1`)
			panic("boom")
		})
	})
	require.Equal(t, 4, counter(t, pool, 1))
	require.Equal(t, byte('I'), txStatus(t, pool))

	// A transaction without a statement succeeds and leaves nothing open.
	require.NoError(t, db.InTx(ctx, func(database.Executor) error { return nil }))
	require.Equal(t, byte('I'), txStatus(t, pool))
}

func TestInTxStatementErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, pool := newCounterDB(t, 1)

	// A failing first statement is reported as the statement's error, classified, and the
	// transaction it began is rolled back.
	err := db.InTx(ctx, func(tx database.Executor) error {
		_, err := tx.Exec(ctx, `INSERT INTO counters VALUES (1, 0)`)
		return err
	})
	require.ErrorIs(t, err, database.ErrConflict)
	require.Equal(t, byte('I'), txStatus(t, pool))

	// A first QueryRow that finds nothing is ErrNotFound.
	err = db.InTx(ctx, func(tx database.Executor) error {
		var n int
		return tx.QueryRow(ctx, `SELECT n FROM counters WHERE id = 99`).Scan(&n)
	})
	require.ErrorIs(t, err, database.ErrNotFound)

	// A first Query that fails reports it from Query or from its rows.
	err = db.InTx(ctx, func(tx database.Executor) error {
		rows, err := tx.Query(ctx, `UPDATE counters SET n = n - 1 WHERE id = 1 RETURNING n`)
		if err != nil {
			return err
		}
		for rows.Next() {
		}
		rows.Close()
		return rows.Err()
	})
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "23514", pe.Code, "the check constraint's violation")

	// A statement that failed after which fn carried on: the commit is refused, nothing stays.
	err = db.InTx(ctx, func(tx database.Executor) error {
		_, err := tx.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id = 2`)
		require.NoError(t, err)
		_, _ = tx.Exec(ctx, `INSERT INTO counters VALUES (2, 0)`)
		return nil
	})
	require.Error(t, err)
	require.Equal(t, 0, counter(t, pool, 2))
	require.Equal(t, byte('I'), txStatus(t, pool))

	// A context that ends before the first statement: nothing ran, the pool still serves.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = db.InTx(cctx, func(tx database.Executor) error {
		_, err := tx.Exec(cctx, `UPDATE counters SET n = n + 1 WHERE id = 1`)
		return err
	})
	require.Error(t, err)
	require.Equal(t, 0, counter(t, pool, 1))
}

func TestPipelinedRunsOneTransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, pool := newCounterDB(t, 2)

	// Queued statements run before the query, in its transaction: the query sees their
	// effects, and a transaction-local setting made by one of them.
	var n int
	var setting string
	err := db.Pipelined(ctx, func(x database.Executor) error {
		tag, err := x.Exec(ctx, `UPDATE counters SET n = n + 5 WHERE id = 1`)
		require.NoError(t, err)
		require.Zero(t, tag.RowsAffected(), "a queued statement has not run yet")
		_, err = x.Exec(ctx, `SELECT set_config('pipeweave.test', 'local', true)`)
		require.NoError(t, err)
		return x.QueryRow(ctx, `SELECT n, current_setting('pipeweave.test') FROM counters WHERE id = 1`).Scan(&n, &setting)
	})
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.Equal(t, "local", setting)
	var after string
	require.NoError(t, pool.QueryRow(ctx, `SELECT current_setting('pipeweave.test', true)`).Scan(&after))
	require.Empty(t, after, "the setting ended with the batch's transaction")

	// A failing statement fails the query and rolls back what ran before it.
	err = db.Pipelined(ctx, func(x database.Executor) error {
		_, _ = x.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id = 2`)
		_, _ = x.Exec(ctx, `INSERT INTO counters VALUES (1, 0)`)
		rows, err := x.Query(ctx, `SELECT n FROM counters`)
		if err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	})
	require.ErrorIs(t, err, database.ErrConflict)
	require.Equal(t, 0, counter(t, pool, 2), "the whole batch rolled back")

	// Nothing may follow the query; statements only queued are sent when fn returns.
	err = db.Pipelined(ctx, func(x database.Executor) error {
		var n int
		require.NoError(t, x.QueryRow(ctx, `SELECT n FROM counters WHERE id = 2`).Scan(&n))
		_, err := x.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id = 2`)
		return err
	})
	require.Error(t, err)
	require.Equal(t, 0, counter(t, pool, 2))
	require.NoError(t, db.Pipelined(ctx, func(x database.Executor) error {
		_, err := x.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id = 2`)
		return err
	}))
	require.Equal(t, 1, counter(t, pool, 2))
}

// TestPipelinedLockOrdersSnapshots: a statement queued after an advisory lock takes its
// snapshot once the lock is held, so each of many concurrent pipelines sees every earlier
// one's commit: read-then-write under the lock loses no increment.
func TestPipelinedLockOrdersSnapshots(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, pool := newCounterDB(t, 8)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				err := db.Pipelined(ctx, func(x database.Executor) error {
					_, _ = x.Exec(ctx, `SELECT pg_advisory_xact_lock(42)`)
					var n int
					return x.QueryRow(ctx, `WITH cur AS (SELECT n FROM counters WHERE id = 1)
						UPDATE counters SET n = (SELECT n FROM cur) + 1 WHERE id = 1 RETURNING n`).Scan(&n)
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, workers*each, counter(t, pool, 1))
}

func TestInTxCommitWithBatch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, pool := newCounterDB(t, 1)

	_, ok := database.CommitWithBatch(db)
	require.False(t, ok, "only a transaction's executor commits with a batch")

	// The last batch carries COMMIT: its statements' results come first, and once it is
	// closed the transaction is committed; nothing may follow.
	err := db.InTx(ctx, func(tx database.Executor) error {
		_, err := tx.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id = 1`)
		require.NoError(t, err)
		c, ok := database.CommitWithBatch(tx)
		require.True(t, ok)
		b := &pgx.Batch{}
		b.Queue(`UPDATE counters SET n = n + 1 WHERE id = 2`)
		b.Queue(`SELECT n FROM counters WHERE id = 1`)
		br := c.SendBatch(ctx, b)
		_, err = br.Exec()
		require.NoError(t, err)
		var n int
		require.NoError(t, br.QueryRow().Scan(&n))
		require.Equal(t, 1, n)
		require.NoError(t, br.Close())
		_, err = tx.Exec(ctx, `UPDATE counters SET n = n + 100 WHERE id = 1`)
		require.Error(t, err, "a statement after the committing batch is refused")
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 1, counter(t, pool, 1))
	require.Equal(t, 1, counter(t, pool, 2))
	require.Equal(t, byte('I'), txStatus(t, pool))

	// A statement of the committing batch fails: nothing of the transaction is committed,
	// the statements before the batch included.
	err = db.InTx(ctx, func(tx database.Executor) error {
		_, err := tx.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id = 1`)
		require.NoError(t, err)
		c, _ := database.CommitWithBatch(tx)
		b := &pgx.Batch{}
		b.Queue(`UPDATE counters SET n = n + 1 WHERE id = 2`)
		b.Queue(`INSERT INTO counters VALUES (1, 0)`)
		return c.SendBatch(ctx, b).Close()
	})
	require.ErrorIs(t, err, database.ErrConflict)
	require.Equal(t, 1, counter(t, pool, 1))
	require.Equal(t, 1, counter(t, pool, 2))
	require.Equal(t, byte('I'), txStatus(t, pool))

	// A committing batch as the transaction's first statements carries BEGIN too.
	err = db.InTx(ctx, func(tx database.Executor) error {
		c, _ := database.CommitWithBatch(tx)
		b := &pgx.Batch{}
		b.Queue(`UPDATE counters SET n = n + 1 WHERE id = 1`)
		b.Queue(`UPDATE counters SET n = n + 1 WHERE id = 2`)
		return c.SendBatch(ctx, b).Close()
	})
	require.NoError(t, err)
	require.Equal(t, 2, counter(t, pool, 1))
	require.Equal(t, 2, counter(t, pool, 2))
	require.Equal(t, byte('I'), txStatus(t, pool))

	// The transaction failed before the committing batch (an error the code went on after):
	// its COMMIT is answered ROLLBACK, which is an error, and nothing is committed.
	err = db.InTx(ctx, func(tx database.Executor) error {
		_, err := tx.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id = 1`)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `INSERT INTO counters VALUES (1, 0)`)
		require.ErrorIs(t, err, database.ErrConflict)
		c, _ := database.CommitWithBatch(tx)
		return c.SendBatch(ctx, &pgx.Batch{}).Close()
	})
	require.ErrorIs(t, err, pgx.ErrTxCommitRollback)
	require.Equal(t, 2, counter(t, pool, 1))

	// The batch is the caller's: sending it with COMMIT leaves it as it was.
	b := &pgx.Batch{}
	b.Queue(`UPDATE counters SET n = n + 1 WHERE id = 1`)
	require.NoError(t, db.InTx(ctx, func(tx database.Executor) error {
		c, _ := database.CommitWithBatch(tx)
		return c.SendBatch(ctx, b).Close()
	}))
	require.Equal(t, 1, b.Len())
	require.Equal(t, 3, counter(t, pool, 1))
}
