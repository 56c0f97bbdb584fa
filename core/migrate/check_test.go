package migrate_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/internal/testdb"
)

func TestMain(m *testing.M) {
	testdb.Main(m)
}

func TestInspect(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool := testdb.New(t)

	known, err := migrate.Status(ctx, pool)
	require.NoError(t, err)
	st, err := migrate.Inspect(ctx, pool)
	require.NoError(t, err)
	require.True(t, st.Current(), "%+v", st)
	require.Equal(t, st.Latest, st.Applied)
	require.Positive(t, st.Latest)

	// A version this binary does not know: a newer binary migrated the database.
	_, err = pool.Exec(ctx, `INSERT INTO pipeweave.schema_migrations (version, name) VALUES ($1, 'newer')`, st.Latest+1)
	require.NoError(t, err)
	newer, err := migrate.Inspect(ctx, pool)
	require.NoError(t, err)
	require.False(t, newer.Current())
	require.Equal(t, st.Latest+1, newer.Applied)
	require.Equal(t, []int{st.Latest + 1}, newer.Unknown)
	require.Empty(t, newer.Pending)

	// The latest known version missing: pending.
	_, err = pool.Exec(ctx, `DELETE FROM pipeweave.schema_migrations WHERE version >= $1`, st.Latest)
	require.NoError(t, err)
	older, err := migrate.Inspect(ctx, pool)
	require.NoError(t, err)
	require.False(t, older.Current())
	require.Equal(t, []int{st.Latest}, older.Pending)
	require.Empty(t, older.Unknown)

	// No schema at all: everything pending, and Inspect created nothing.
	_, err = pool.Exec(ctx, `DROP SCHEMA pipeweave CASCADE`)
	require.NoError(t, err)
	none, err := migrate.Inspect(ctx, pool)
	require.NoError(t, err)
	require.False(t, none.Exists)
	require.Zero(t, none.Applied)
	require.Len(t, none.Pending, len(known), "every known migration is pending")
	var exists bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass('pipeweave.schema_migrations') IS NOT NULL`).Scan(&exists))
	require.False(t, exists)
}
