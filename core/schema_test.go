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
