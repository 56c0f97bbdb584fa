package functions_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testdb"
)

// TestProcessFunctionObeysMaintenance runs the api and process functions as Cloud Run style
// servers on one database: in maintenance, work is accepted but neither the api's inline
// dispatch nor the process function claims it; after exit it is dispatched and completes.
func TestProcessFunctionObeysMaintenance(t *testing.T) {
	t.Parallel()
	bins := buildFunctions(t)
	dbURL := testdb.NewURL(t)
	pool := openPool(t, dbURL)
	env := functionEnv(t, dbURL)
	api := serveHTTP(t, "api", bins["api"], env)
	process := serveHTTP(t, "process", bins["process"], env)
	w := newWorker(t, api)
	register(t, api, protocol.RegisterRequest{ServiceID: "svc", Version: "1", BaseURL: w.URL(),
		Tasks: []protocol.TaskDefinition{{ID: "t", CodeHash: "t"}}})

	type status struct {
		Mode         string `json:"mode"`
		PendingTasks int    `json:"pendingTasks"`
		RunningTasks int    `json:"runningTasks"`
	}
	var st status
	doJSON(t, "POST", api+"/api/maintenance/enter", nil, http.StatusOK, &st)
	require.Equal(t, "maintenance", st.Mode, "nothing in flight: maintenance at once")
	var health struct {
		Maintenance struct {
			Mode string `json:"mode"`
		} `json:"maintenance"`
	}
	doJSON(t, "GET", api+"/health", nil, http.StatusOK, &health)
	require.Equal(t, "maintenance", health.Maintenance.Mode)

	runs := enqueueBatch(t, api, "t", 5, 0)
	for range 3 {
		require.Zero(t, callProcess(t, process).Claimed, "the process function claims nothing in maintenance")
	}
	pending := func() int {
		var n int
		require.NoError(t, pool.QueryRow(context.Background(),
			"SELECT count(*) FROM task_runs WHERE id = ANY($1) AND status = 'pending'", runs).Scan(&n))
		return n
	}
	require.Equal(t, len(runs), pending())
	doJSON(t, "GET", api+"/api/maintenance", nil, http.StatusOK, &st)
	require.Equal(t, status{Mode: "maintenance", PendingTasks: 5}, st)
	got, _, raw := do(t, "POST", api+"/api/maintenance/enter", nil, "")
	require.Equal(t, http.StatusConflict, got, "%s", raw)
	requireCode(t, raw, "MAINTENANCE_STATE")

	doJSON(t, "POST", api+"/api/maintenance/exit", nil, http.StatusOK, &st)
	require.Equal(t, "running", st.Mode)
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		require.NoError(t, pool.QueryRow(context.Background(),
			"SELECT count(*) FROM task_runs WHERE id = ANY($1) AND status = 'completed'", runs).Scan(&n))
		if n == len(runs) {
			break
		}
		require.True(t, time.Now().Before(deadline), "the runs did not complete after exit")
		callProcess(t, process)
		time.Sleep(50 * time.Millisecond)
	}
	w.requireEachRunAcceptedOnce(t, runs, 1)
}
