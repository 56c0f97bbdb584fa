package core_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// runOutOfTime moves pipeline run id's deadline into the past, as if its timeout had run out
// (the orchestrator reads the database clock; the test does not wait).
func (e *env) runOutOfTime(id string) {
	e.t.Helper()
	_, err := e.pool.Exec(e.t.Context(), `UPDATE pipeline_runs SET deadline = now() - interval '1 second' WHERE id = $1`, id)
	require.NoError(e.t, err)
}

// requireTimedOut checks that run failed with PIPELINE_TIMEOUT after timeoutMs, a completed,
// and b, c, d cancelled because the run timed out.
func requireTimedOut(t *testing.T, run pipelineRun, timeoutMs int64, a string) {
	t.Helper()
	require.Equal(t, "failed", run.Status)
	require.Equal(t, protocol.PipelineTimeout, run.ErrorCode)
	require.Equal(t, "pipeline run timed out after "+itoa(timeoutMs)+" ms", *run.Error)
	require.Equal(t, map[string]string{"a": a, "b": "cancelled", "c": "cancelled", "d": "cancelled"}, run.states())
	require.Equal(t, "the pipeline run timed out", *run.node("b").Error)
	require.Equal(t, "CANCELLED", *run.node("b").ErrorCode)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A standalone orchestrator's loop times out a pipeline run whose task blocks in a real worker:
// the worker's next heartbeat answers shouldCancel, and its late callback changes nothing. A
// pipeline's own short timeoutMs (PUT) runs out by itself.
func TestPipelineDeadlineStandalone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone; c.PollInterval = 20 * time.Millisecond })
	w := newPWorker(t, e)
	diamond(e, w.URL())
	release := w.holdTask("a")
	e.runLoop()

	id := e.trigger("dia", map[string]any{"input": map[string]any{}, "timeoutMs": 3_600_000})
	run := e.pipelineRun(id)
	require.Equal(t, int64(3_600_000), *run.TimeoutMs)
	require.NotNil(t, run.Deadline)
	require.Empty(t, run.ErrorCode)
	w.waitUntil("a to run", func() bool { return len(w.dispatchesOf("a")) == 1 })
	a := w.dispatchesOf("a")[0]
	e.waitStatus(a.RunID, protocol.StatusRunning)
	e.runOutOfTime(id)
	requireTimedOut(t, e.waitRun(id, "failed"), 3_600_000, "cancelled")

	status, hb := w.heartbeat(a, ptr(10), "")
	require.Equal(t, http.StatusOK, status)
	require.True(t, hb.ShouldCancel, "the blocked worker is told to stop")
	release()
	w.waitUntil("a's late callback", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["a"]) == 1
	})
	require.Equal(t, []int{http.StatusOK}, w.statuses["a"])
	requireTimedOut(t, e.pipelineRun(id), 3_600_000, "cancelled")
	require.Empty(t, w.dispatchesOf("b"), "nothing after a ran")
	require.Zero(t, e.dlqTotal())

	// A pipeline declared with a short timeout: its run fails once it passed, whatever state its
	// nodes were in (a blocks again).
	r := e.do("PUT", "/api/pipelines/short", map[string]any{"entryTasks": []string{"a"}, "timeoutMs": 200}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var p protocol.Pipeline
	r.json(t, &p)
	require.Equal(t, int64(200), *p.TimeoutMs)
	releaseShort := w.holdTask("a")
	t.Cleanup(releaseShort)
	short := e.trigger("short", nil)
	run = e.waitRun(short, "failed")
	require.Equal(t, protocol.PipelineTimeout, run.ErrorCode)
	require.Equal(t, "pipeline run timed out after 200 ms", *run.Error)
	for task, state := range run.states() {
		require.Contains(t, []string{"cancelled"}, state, task)
	}
	// If a was claimed before the deadline, its worker calls back late once released: wait for
	// that call, which must not reach an orchestrator already shut down.
	claimed := e.count(`SELECT count(*) FROM task_runs WHERE id = $1 AND started_at IS NOT NULL`, run.node("a").ID) == 1
	releaseShort()
	if claimed {
		w.waitUntil("the short run's late callback", func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(w.statuses["a"]) == 2
		})
		require.Equal(t, []int{http.StatusOK, http.StatusOK}, w.statuses["a"])
	}
	require.Equal(t, "failed", e.pipelineRun(short).Status)
}

// Serverless mode has no loop: the heartbeat-sweep function (Orchestrator.Sweep) and
// POST /api/process time runs out.
func TestPipelineDeadlineServerless(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	diamond(e, w.URL())
	release := w.holdTask("a")
	defer release()

	// The heartbeat-sweep function.
	id := e.trigger("dia", map[string]any{"input": map[string]any{}, "timeoutMs": 3_600_000})
	w.waitUntil("a to run", func() bool { return len(w.dispatchesOf("a")) == 1 })
	a := w.dispatchesOf("a")[0]
	e.waitStatus(a.RunID, protocol.StatusRunning)
	e.runOutOfTime(id)
	n, err := e.orch.Sweep(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	requireTimedOut(t, e.pipelineRun(id), 3_600_000, "cancelled")
	status, hb := w.heartbeat(a, nil, "")
	require.Equal(t, http.StatusOK, status)
	require.True(t, hb.ShouldCancel)
	r := e.do("GET", "/metrics", nil, "")
	require.Equal(t, http.StatusOK, r.Status)
	require.Contains(t, string(r.Body), `pipeweave_pipeline_timeouts_total{pipeline="dia"} 1`)

	// POST /api/process, with a run whose a completed first (b holds it open).
	releaseB := w.holdTask("b")
	defer releaseB()
	second := e.trigger("dia", map[string]any{"input": map[string]any{}, "timeoutMs": 3_600_000})
	release()
	e.waitMoved("a of the second run to complete", func() bool { return e.pipelineRun(second).node("a").Status == "completed" })
	e.runOutOfTime(second)
	r = e.do("POST", "/api/process", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	run := e.pipelineRun(second)
	require.Equal(t, "failed", run.Status)
	require.Equal(t, protocol.PipelineTimeout, run.ErrorCode)
	require.Equal(t, "completed", run.node("a").Status)
	require.Equal(t, "cancelled", run.node("b").Status)
	require.Equal(t, "cancelled", run.node("d").Status)
	// The first run's a called back late (changing nothing), the second's in time; b and c,
	// if they were claimed, call back (b late, once released) before the test ends.
	claimed := func(task string) int {
		return e.count(`SELECT count(*) FROM task_runs WHERE id = $1 AND started_at IS NOT NULL`, run.node(task).ID)
	}
	bClaimed, cClaimed := claimed("b"), claimed("c")
	releaseB()
	w.waitUntil("the callbacks", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["a"]) == 2 && len(w.statuses["b"]) == bClaimed && len(w.statuses["c"]) == cClaimed
	})
	requireTimedOut(t, e.pipelineRun(id), 3_600_000, "cancelled")
	require.Equal(t, "failed", e.pipelineRun(second).Status)
}

// A bad timeoutMs (0, negative, fractional, a string, over 30 days) is 400 INVALID_TIMEOUT on
// PUT /api/pipelines/{id}, on a registration's pipelines and on a trigger, and writes nothing.
func TestBadPipelineTimeoutIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	for _, bad := range []string{"0", "-1", "1.5", `"x"`, "2592000001", "1e30"} {
		r := e.do("PUT", "/api/pipelines/p", `{"entryTasks":["t"],"timeoutMs":`+bad+`}`, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "PUT %s: %s", bad, r.Body)
		require.Equal(t, "INVALID_TIMEOUT", r.errorBody(t).Code, "PUT %s", bad)

		r = e.postReg("svc2", `{"serviceId":"svc2","version":"1","baseUrl":"`+w.URL()+`","tasks":[{"id":"x","codeHash":"h"}],`+
			`"pipelines":[{"id":"q","entryTasks":["x"],"timeoutMs":`+bad+`}]}`)
		require.Equal(t, http.StatusBadRequest, r.Status, "register %s: %s", bad, r.Body)
		require.Equal(t, "INVALID_TIMEOUT", r.errorBody(t).Code, "register %s", bad)

		r = e.do("POST", "/api/pipelines/svc/trigger", `{"input":{},"timeoutMs":`+bad+`}`, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "trigger %s: %s", bad, r.Body)
		require.Equal(t, "INVALID_TIMEOUT", r.errorBody(t).Code, "trigger %s", bad)
		// Without "input", the fields are still read as the trigger's (not as the input).
		r = e.do("POST", "/api/pipelines/svc/trigger", `{"timeoutMs":`+bad+`}`, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "trigger %s: %s", bad, r.Body)
		require.Equal(t, "INVALID_TIMEOUT", r.errorBody(t).Code, "trigger %s", bad)
	}
	require.Zero(t, e.count("SELECT count(*) FROM pipelines WHERE id IN ('p', 'q', 'svc2')"), "no pipeline was stored")
	require.Zero(t, e.count("SELECT count(*) FROM services WHERE id = 'svc2'"), "no service was registered")
	require.Zero(t, e.count("SELECT count(*) FROM pipeline_runs"), "no run was triggered")
	require.Zero(t, e.count("SELECT count(*) FROM task_runs"), "no task run was written")
}
