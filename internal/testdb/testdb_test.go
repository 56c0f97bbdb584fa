package testdb

import (
	"context"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/migrations"
)

func TestMain(m *testing.M) { Main(m) }

func migrationCount(t *testing.T) int {
	t.Helper()
	names, err := fs.Glob(migrations.FS, "*.sql")
	require.NoError(t, err)
	return len(names)
}

// checkFresh asserts that pool's database has every migration and no services, and returns
// its name.
func checkFresh(t *testing.T, ctx context.Context, pool *pgxpool.Pool) string {
	t.Helper()
	var name string
	var applied, services int
	require.NoError(t, pool.QueryRow(ctx, `SELECT current_database(),
		(SELECT count(*) FROM pipeweave.schema_migrations),
		(SELECT count(*) FROM services)`).Scan(&name, &applied, &services))
	require.True(t, strings.HasPrefix(name, "pw_test_"), name)
	require.Equal(t, migrationCount(t), applied)
	require.Zero(t, services)
	return name
}

func addService(t *testing.T, ctx context.Context, pool *pgxpool.Pool, id string) {
	t.Helper()
	_, err := pool.Exec(ctx, `INSERT INTO services (id, version, base_url) VALUES ($1, '1', 'http://127.0.0.1')`, id)
	require.NoError(t, err)
}

func serviceIDs(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT id FROM services ORDER BY id`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

// The two parallel tests below meet halfway: each writes, waits (a while at most) for the
// other to have written, then must see only its own row. With -count above 1 the later
// rounds find the meeting point already passed.
var (
	parallelNames sync.Map
	wroteA        = newSignal()
	wroteB        = newSignal()
)

type signal struct {
	once sync.Once
	ch   chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) fire() { s.once.Do(func() { close(s.ch) }) }

func parallelHalf(t *testing.T, me string, mine, theirs *signal) {
	ctx := context.Background()
	pool := New(t)
	name := checkFresh(t, ctx, pool)
	parallelNames.Store(me, name)
	addService(t, ctx, pool, me)
	mine.fire()
	select {
	case <-theirs.ch:
	case <-time.After(30 * time.Second): // -parallel 1: the other runs after this one
	}
	require.Equal(t, []string{me}, serviceIDs(t, ctx, pool))
	parallelNames.Range(func(other, otherName any) bool {
		if other != me {
			require.NotEqual(t, name, otherName, "both tests got the same database")
		}
		return true
	})
}

func TestParallelA(t *testing.T) {
	t.Parallel()
	parallelHalf(t, "a", wroteA, wroteB)
}

func TestParallelB(t *testing.T) {
	t.Parallel()
	parallelHalf(t, "b", wroteB, wroteA)
}

func TestIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	one, two := New(t), New(t)
	nameOne, nameTwo := checkFresh(t, ctx, one), checkFresh(t, ctx, two)
	require.NotEqual(t, nameOne, nameTwo)

	addService(t, ctx, one, "only-in-one")
	require.Equal(t, []string{"only-in-one"}, serviceIDs(t, ctx, one))
	require.Empty(t, serviceIDs(t, ctx, two))
}

func TestNewURLAndDrop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var name string
	t.Run("uses", func(t *testing.T) {
		url := NewURL(t)
		conn, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		defer conn.Close(ctx)
		var applied int
		require.NoError(t, conn.QueryRow(ctx, `SELECT current_database(), count(*) FROM pipeweave.schema_migrations`).
			Scan(&name, &applied))
		require.Equal(t, migrationCount(t), applied)
		// A connection still open at the end does not keep the database from being dropped.
	})
	admin, _, template, err := setup(ctx)
	require.NoError(t, err)
	var left, templates int
	require.NoError(t, admin.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM pg_database WHERE datname = $1),
		(SELECT count(*) FROM pg_database WHERE datname = $2 AND NOT datallowconn)`, name, template).
		Scan(&left, &templates))
	require.Zero(t, left, "the database is dropped when its test ends")
	require.Equal(t, 1, templates)
}

func TestTemplateName(t *testing.T) {
	t.Parallel()
	a, err := templateName()
	require.NoError(t, err)
	b, err := templateName()
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.Regexp(t, `^pw_tmpl_[0-9a-f]{12}$`, a)
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	got, err := withDatabase("postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable", "pw_test_1")
	require.NoError(t, err)
	require.Equal(t, "postgres://u:p@127.0.0.1:5432/pw_test_1?sslmode=disable", got)
	got, err = withDatabase("host=127.0.0.1 dbname=postgres", "pw_test_1")
	require.NoError(t, err)
	cfg, err := pgx.ParseConfig(got)
	require.NoError(t, err)
	require.Equal(t, "pw_test_1", cfg.Database)
}
