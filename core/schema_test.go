package core_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/internal/testdb"
)

// TestSchemaMismatchIsAnsweredUntilMigrated runs an orchestrator on a database whose schema is
// missing, then newer than the binary's: /health and every /api/ route answer 503 with the
// reason, Process, Sweep and Purge refuse to work, and once the schema is right the same
// instance serves without a restart.
func TestSchemaMismatchIsAnsweredUntilMigrated(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := testdb.New(t)
	st, err := migrate.Inspect(ctx, pool)
	require.NoError(t, err)
	latest := st.Latest
	_, err = pool.Exec(ctx, "DROP SCHEMA "+migrate.Schema+" CASCADE")
	require.NoError(t, err)
	e := newEnvOn(t, pool)

	requireRefused := func(want string) {
		t.Helper()
		r := e.do("GET", "/health", nil, "")
		require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
		var health map[string]string
		r.json(t, &health)
		require.Equal(t, "unavailable", health["status"])
		require.Equal(t, "ok", health["database"], "the database answers; its schema is the problem")
		require.Contains(t, health["schema"], want)

		for _, path := range []string{"/api/queue/status", "/api/task-runs/trun_x", "/api/dlq"} {
			r = e.do("GET", path, nil, "")
			require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s: %s", path, r.Body)
			b := r.errorBody(t)
			require.Equal(t, "SCHEMA_MISMATCH", b.Code, path)
			require.Contains(t, b.Error, want, path)
		}
		r = e.do("POST", "/api/queue/task", map[string]any{"taskId": "t", "input": map[string]int{"n": 1}}, "")
		require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)

		_, err := e.orch.Process(ctx)
		require.ErrorIs(t, err, migrate.ErrSchema)
		require.ErrorContains(t, err, want)
		_, err = e.orch.Sweep(ctx)
		require.ErrorIs(t, err, migrate.ErrSchema)
		_, err = e.orch.Purge(ctx, time.Second)
		require.ErrorIs(t, err, migrate.ErrSchema)
	}

	requireRefused("has no PipeWeave schema: run `pipeweave db migrate`")
	st, err = migrate.Inspect(ctx, pool)
	require.NoError(t, err)
	require.False(t, st.Exists, "refusing created nothing")

	// A newer binary migrated the database further: refused too, with the version.
	_, err = migrate.Up(ctx, pool)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "INSERT INTO "+migrate.Schema+".schema_migrations (version, name) VALUES ($1, 'from_the_future')", latest+1)
	require.NoError(t, err)
	requireRefused("newer than this binary's")

	// The right schema: the same instance serves, with no restart.
	_, err = pool.Exec(ctx, "DELETE FROM "+migrate.Schema+".schema_migrations WHERE version = $1", latest+1)
	require.NoError(t, err)
	r := e.do("GET", "/health", nil, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var health map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &health))
	require.NotContains(t, health, "schema")
	require.Equal(t, http.StatusOK, e.do("GET", "/api/queue/status", nil, "").Status)
	_, err = e.orch.Process(ctx)
	require.NoError(t, err)
}

// TestFinalStatusCountsFollowEveryChange drives task runs through every kind of status change
// in SQL and checks that the counts of final statuses (run_status_counts plus the deltas the
// triggers of migrations 001 and 020 append) equal the table's, before and after the sweep
// folds them, and that changes which cannot move a final count (an insert of a pending run, a
// claim, an acknowledgement, a status set to itself) append no delta at all.
func TestFinalStatusCountsFollowEveryChange(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newEnv(t)
	e.register("svc", "1", "http://127.0.0.1:1", task("t"))
	ids := e.enqueueManyQuiet("t", 7)
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := e.pool.Exec(ctx, sql, args...)
		require.NoError(t, err, sql)
	}
	deltas := func() int {
		t.Helper()
		var n int
		require.NoError(t, e.pool.QueryRow(ctx, "SELECT count(*) FROM run_status_deltas").Scan(&n))
		return n
	}
	requireCountsMatch := func() {
		t.Helper()
		rows, err := e.pool.Query(ctx, `
			SELECT coalesce(a.status, c.status), coalesce(a.n, 0), coalesce(c.n, 0)
			FROM (SELECT status, count(*)::bigint AS n FROM task_runs
			      WHERE status IN ('completed', 'failed', 'cancelled', 'skipped') GROUP BY status) a
			FULL JOIN (SELECT status, sum(n)::bigint AS n FROM (
			      SELECT status, n FROM run_status_counts UNION ALL SELECT status, n FROM run_status_deltas) u
			      GROUP BY status) c ON c.status = a.status`)
		require.NoError(t, err)
		for rows.Next() {
			var status string
			var actual, counted int64
			require.NoError(t, rows.Scan(&status, &actual, &counted))
			require.Equal(t, actual, counted, "runs %s", status)
		}
		require.NoError(t, rows.Err())
	}
	base := deltas()

	// A claim and an acknowledgement: no delta.
	exec("UPDATE task_runs SET status = 'dispatching' WHERE id = ANY($1)", ids)
	exec("UPDATE task_runs SET status = 'running' WHERE id = ANY($1)", ids)
	exec("UPDATE task_runs SET status = status WHERE id = ANY($1)", ids)
	require.Equal(t, base, deltas(), "changes between live statuses count nothing")

	exec("UPDATE task_runs SET status = 'completed' WHERE id = ANY($1)", ids[:3])
	exec("UPDATE task_runs SET status = 'failed' WHERE id = $1", ids[3])
	exec("UPDATE task_runs SET status = 'cancelled' WHERE id = $1", ids[4])
	require.Equal(t, base+5, deltas())
	exec("UPDATE task_runs SET status = status WHERE id = ANY($1)", ids)
	require.Equal(t, base+5, deltas(), "a final status set to itself counts nothing")
	// Out of a final status and into another one, and back to live.
	exec("UPDATE task_runs SET status = 'skipped' WHERE id = $1", ids[0])
	exec("UPDATE task_runs SET status = 'pending' WHERE id = $1", ids[1])
	require.Equal(t, base+8, deltas(), "completed -> skipped is two deltas, completed -> pending one")
	requireCountsMatch()

	// Deletes: of a final run (counted down), of a live one (nothing).
	exec("DELETE FROM task_runs WHERE id = $1", ids[2])
	require.Equal(t, base+9, deltas())
	exec("DELETE FROM task_runs WHERE id = $1", ids[6])
	require.Equal(t, base+9, deltas())
	// Inserts: of a final run (counted), of a live one (nothing).
	exec(`INSERT INTO task_runs (id, task_id, status, input_path, attempt, code_version, code_hash, priority)
	      SELECT id || '_copy', task_id, 'failed', input_path, attempt, code_version, code_hash, priority
	      FROM task_runs WHERE id = $1`, ids[5])
	require.Equal(t, base+10, deltas())
	exec(`INSERT INTO task_runs (id, task_id, status, input_path, attempt, code_version, code_hash, priority)
	      SELECT id || '_live', task_id, 'pending', input_path, attempt, code_version, code_hash, priority
	      FROM task_runs WHERE id = $1`, ids[5])
	require.Equal(t, base+10, deltas())
	requireCountsMatch()

	_, err := e.orch.Sweep(ctx)
	require.NoError(t, err)
	require.Zero(t, deltas(), "the sweep folds the deltas")
	requireCountsMatch()
}
