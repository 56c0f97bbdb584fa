package core_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// maintenanceStatus is upstream's MaintenanceStatus.
type maintenanceStatus struct {
	Mode                string    `json:"mode"`
	CanEnterMaintenance bool      `json:"canEnterMaintenance"`
	PendingTasks        int64     `json:"pendingTasks"`
	RunningTasks        int64     `json:"runningTasks"`
	ModeChangedAt       time.Time `json:"modeChangedAt"`
	Message             string    `json:"message"`
}

// maintenance sends a maintenance command ("" = GET the status) and requires 200.
func (e *env) maintenance(command string) maintenanceStatus {
	e.t.Helper()
	r := e.do("GET", "/api/maintenance", nil, "")
	if command != "" {
		r = e.do("POST", "/api/maintenance/"+command, nil, "")
	}
	require.Equal(e.t, http.StatusOK, r.Status, "maintenance %s: %s", command, r.Body)
	var s maintenanceStatus
	r.json(e.t, &s)
	require.NotEmpty(e.t, s.Message)
	require.False(e.t, s.ModeChangedAt.IsZero())
	return s
}

// requireMaintenanceConflict sends a command in the wrong state: 409 MAINTENANCE_STATE that
// names the current mode.
func (e *env) requireMaintenanceConflict(command, mode string) {
	e.t.Helper()
	r := e.do("POST", "/api/maintenance/"+command, nil, "")
	require.Equal(e.t, http.StatusConflict, r.Status, "%s: %s", command, r.Body)
	var b struct {
		Code    string            `json:"code"`
		Error   string            `json:"error"`
		Details map[string]string `json:"details"`
	}
	r.json(e.t, &b)
	require.Equal(e.t, "MAINTENANCE_STATE", b.Code)
	require.Contains(e.t, b.Error, mode)
	require.Equal(e.t, mode, b.Details["mode"])
}

// storedMode reads the mode straight from the database, without the settling a status read does.
func (e *env) storedMode() string {
	e.t.Helper()
	var mode string
	require.NoError(e.t, e.pool.QueryRow(context.Background(), "SELECT mode FROM orchestrator_state").Scan(&mode))
	return mode
}

func (e *env) healthMaintenance() map[string]any {
	e.t.Helper()
	r := e.do("GET", "/health", nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, "health stays 200 in every mode: %s", r.Body)
	var h map[string]any
	r.json(e.t, &h)
	require.Equal(e.t, "ok", h["status"])
	require.Equal(e.t, "ok", h["database"])
	require.NotEmpty(e.t, h["mode"])
	m, ok := h["maintenance"].(map[string]any)
	require.True(e.t, ok, "health has a maintenance object: %s", r.Body)
	return m
}

// Maintenance across two orchestrator instances and the serverless process batch on one
// database: entering on A stops A's standalone loop, B's inline dispatch and process calls
// from claiming; the run in flight finishes and its callback is accepted, which ends the wait;
// enqueue and trigger keep answering 201; exiting on B dispatches the work that waited.
func TestMaintenanceAcrossInstances(t *testing.T) {
	t.Parallel()
	a := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone })
	aLoop := a.orch.LoopSignals()
	a.runLoop()
	b := newEnvOn(t, a.pool) // serverless: dispatches inline after enqueue and callbacks
	proc := newEnvOn(t, a.pool)

	w := newWorker(t, b.url)
	held := make(chan protocol.DispatchRequest, 1)
	w.after = func(d protocol.DispatchRequest) {
		if d.TaskID == "hold" {
			held <- d
			return
		}
		w.callback(d, success(d))
	}
	b.register("svc", "1", w.URL(), task("hold"), task("quick"), task("p1", next("p2")), task("p2"))
	r := b.do("PUT", "/api/pipelines/flow", protocol.PipelineDefinition{EntryTasks: []string{"p1"}}, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)

	st := a.maintenance("")
	require.Equal(t, "running", st.Mode)
	require.Equal(t, "running", a.healthMaintenance()["mode"])
	b.requireMaintenanceConflict("exit", "running")

	// A run in flight when maintenance is requested.
	inflight := b.enqueue(map[string]any{"taskId": "hold"}).RunID
	d := <-held
	require.Equal(t, inflight, d.RunID)
	b.waitStatus(inflight, protocol.StatusRunning)

	st = a.maintenance("enter")
	require.Equal(t, "waiting_for_maintenance", st.Mode)
	require.EqualValues(t, 1, st.RunningTasks)
	require.False(t, st.CanEnterMaintenance)
	b.requireMaintenanceConflict("enter", "waiting_for_maintenance")
	require.Equal(t, "waiting_for_maintenance", b.healthMaintenance()["mode"])

	// Work keeps being accepted, and waits: B's inline dispatch, A's loop (woken by NOTIFY and
	// by its own enqueue) and process calls claim nothing.
	quick := b.enqueue(map[string]any{"taskId": "quick"}).RunID
	fromA := a.enqueue(map[string]any{"taskId": "quick"}).RunID
	prun := b.trigger("flow", map[string]any{"input": map[string]int{"n": 1}})
	require.Zero(t, proc.process().Claimed)
	r = proc.do("POST", "/api/process", nil, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var sum core.Summary
	r.json(t, &sum)
	require.Zero(t, sum.Claimed)
	// A's loop (50 ms poll interval) makes several passes, each claiming nothing (the pass in
	// progress when the signals are drained may have begun before maintenance was entered).
	aLoop.DrainPasses()
	aLoop.Pass(t)
	for range 5 {
		require.Zero(t, aLoop.Pass(t))
	}
	for _, id := range []string{quick, fromA} {
		require.Equal(t, protocol.StatusPending, b.run(id).Status)
	}
	require.EqualValues(t, protocol.StatusPending, b.pipelineRun(prun).node("p1").Status)
	require.Equal(t, 1, w.count(), "only the run in flight was ever dispatched")
	st = b.maintenance("")
	require.Equal(t, "waiting_for_maintenance", st.Mode)
	require.EqualValues(t, 3, st.PendingTasks)

	// The run in flight finishes; its callback (to B) is accepted and ends the wait at once.
	status, body := w.callback(d, success(d))
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Equal(t, protocol.StatusCompleted, b.run(inflight).Status)
	require.Equal(t, "maintenance", b.storedMode(), "the callback that ended the last run in flight entered maintenance")
	st = a.maintenance("")
	require.Equal(t, "maintenance", st.Mode)
	require.True(t, st.CanEnterMaintenance)
	require.Zero(t, st.RunningTasks)
	require.EqualValues(t, 3, st.PendingTasks)
	require.Equal(t, "maintenance", a.healthMaintenance()["mode"])
	a.requireMaintenanceConflict("enter", "maintenance")

	// Still accepted in maintenance, still waiting.
	late := b.enqueue(map[string]any{"taskId": "quick"}).RunID
	prun2 := a.trigger("flow", map[string]any{"input": map[string]int{"n": 2}})
	require.Zero(t, proc.process().Claimed)
	require.Equal(t, protocol.StatusPending, b.run(late).Status)
	require.Equal(t, 1, w.count())

	st = b.maintenance("exit")
	require.Equal(t, "running", st.Mode)
	b.requireMaintenanceConflict("exit", "running")
	for _, id := range []string{quick, fromA, late} {
		b.waitStatus(id, protocol.StatusCompleted)
	}
	b.waitRun(prun, "completed")
	b.waitRun(prun2, "completed")
	require.Equal(t, "running", a.healthMaintenance()["mode"])
}

// With nothing in flight, enter goes straight to maintenance; bad bodies are refused and
// change nothing; the API key guards the endpoints.
func TestMaintenanceEnterWhenIdleAndBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.APIKeys = []string{"k"} })
	r := e.do("GET", "/api/maintenance", nil, "")
	require.Equal(t, http.StatusUnauthorized, r.Status)
	for _, cmd := range []string{"enter", "exit"} {
		r = e.do("POST", "/api/maintenance/"+cmd, nil, "")
		require.Equal(t, http.StatusUnauthorized, r.Status)
		r = e.do("POST", "/api/maintenance/"+cmd, `{"force": true}`, "k")
		require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
		require.Equal(t, "UNKNOWN_FIELD", r.errorBody(t).Code)
		r = e.do("POST", "/api/maintenance/"+cmd, `{`, "k")
		require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
		require.Equal(t, "MALFORMED_JSON", r.errorBody(t).Code)
	}
	require.Equal(t, "running", e.storedMode())

	r = e.do("POST", "/api/maintenance/enter", `{}`, "k")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var st maintenanceStatus
	r.json(t, &st)
	require.Equal(t, "maintenance", st.Mode, "nothing in flight: maintenance at once")
	require.True(t, st.CanEnterMaintenance)
	r = e.do("GET", "/metrics", nil, "k")
	require.Equal(t, http.StatusOK, r.Status)
	require.Contains(t, string(r.Body), `pipeweave_maintenance_mode{mode="maintenance"} 1`)
	require.Contains(t, string(r.Body), `pipeweave_maintenance_mode{mode="running"} 0`)
	r = e.do("POST", "/api/maintenance/enter", nil, "k")
	require.Equal(t, http.StatusConflict, r.Status)
	require.Equal(t, "MAINTENANCE_STATE", r.errorBody(t).Code)
	r = e.do("POST", "/api/maintenance/exit", nil, "k")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	r.json(t, &st)
	require.Equal(t, "running", st.Mode)
}

// Entering races a stream of claims from several instances, round after round: once enter
// has returned, no run is claimed any more (no lease moves), whatever the claims in progress.
func TestMaintenanceEnterRacingClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url) // acknowledges every dispatch and never calls back
	e.register("svc", "1", w.URL(), task("t"))
	instances := make([]*env, 4)
	for i := range instances {
		instances[i] = newEnvOn(t, e.pool, func(c *core.Config) { c.ProcessBatchSize = 2 })
	}
	leases := func() map[string]int64 {
		rows, err := e.pool.Query(context.Background(), "SELECT id, lease FROM task_runs")
		require.NoError(t, err)
		defer rows.Close()
		out := map[string]int64{}
		for rows.Next() {
			var id string
			var lease int64
			require.NoError(t, rows.Scan(&id, &lease))
			out[id] = lease
		}
		require.NoError(t, rows.Err())
		return out
	}
	claimed := func() int {
		var n int
		require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM task_runs WHERE lease > 0").Scan(&n))
		return n
	}
	for round := range rounds(10) {
		if round > 0 {
			require.Equal(t, "running", e.maintenance("exit").Mode)
		}
		e.enqueueManyQuiet("t", 300)
		before := claimed()
		ctx, cancel := context.WithCancel(context.Background())
		calls := make([]atomic.Int64, len(instances))
		var wg sync.WaitGroup
		for i, inst := range instances {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if _, err := inst.orch.Process(ctx); err != nil && ctx.Err() == nil {
						t.Errorf("process: %v", err)
						return
					}
					calls[i].Add(1)
				}
			}()
		}
		// Enter while the claims are going on.
		// A claim commits before its dispatch reaches the worker.
		w.waitUntil("claims to start", func() bool { return claimed() > before })
		st := e.maintenance("enter")
		require.Equal(t, "waiting_for_maintenance", st.Mode, "round %d", round)
		after := leases()
		// Every instance claims again several times after enter returned.
		seen := make([]int64, len(instances))
		for i := range calls {
			seen[i] = calls[i].Load()
		}
		e.waitFor("more claims", func() bool {
			for i := range calls {
				if calls[i].Load() < seen[i]+5 {
					return false
				}
			}
			return true
		})
		cancel()
		wg.Wait()
		require.Equal(t, after, leases(), "round %d: a run was claimed after enter returned", round)
		var pending int
		require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM task_runs WHERE status = 'pending'").Scan(&pending))
		require.Positive(t, pending, "round %d: the race needs runs left to claim", round)
	}
}
