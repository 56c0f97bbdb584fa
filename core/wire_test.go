package core_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/wiretest"
)

// TestWireFormatOfARun pins the JSON of a run's life to the literal fixtures of
// testdata/wire, in both directions: the requests are sent as the fixtures' bytes, and what
// the orchestrator answers, dispatches and then shows of the run (the task definitions a
// registration recorded, the run with the heartbeat's progress and the callback's paths) must
// equal the fixtures as JSON. A renamed field on either side fails it. GET
// /api/task-runs/{id} is also what `pipeweave status trun_… --json` prints.
func TestWireFormatOfARun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	dispatched := make(chan protocol.DispatchRequest, 2)
	w.after = func(d protocol.DispatchRequest) { dispatched <- d }
	e.register("wire", "1.0.0", w.URL(), task("render"), task("gone"))

	// The registration of version 2 changes render's code and orphans gone.
	reg := wiretest.Body(t, "register-request.json", wiretest.Subst{w.URL(): "<baseUrl>"})
	r := e.do("POST", "/api/register", reg, e.regToken("wire", reg))
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	wiretest.Require(t, "register-response.json", r.Body, nil)
	r = e.do("GET", "/api/services/wire/tasks", nil, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	wiretest.Require(t, "service-tasks.json", r.Body, nil)

	r = e.do("POST", "/api/queue/task", wiretest.Body(t, "enqueue-request.json", nil), "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	var q enqueued
	r.json(t, &q)
	ids := wiretest.Subst{q.RunID: "<runId>"}
	wiretest.Require(t, "enqueue-response.json", r.Body, ids)

	// Attempt 1 fails; attempt 2 is dispatched with it in previousAttempts.
	first := recv(t, dispatched, "the first dispatch")
	r = e.do("POST", "/api/callback/"+q.RunID, wiretest.Body(t, "callback-failed-request.json", ids), first.StorageToken)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	wiretest.Require(t, "callback-failed-response.json", r.Body, ids)
	_, err := e.pool.Exec(t.Context(), "UPDATE task_runs SET available_at = now() WHERE id = $1 AND status = 'pending'", q.RunID)
	require.NoError(t, err)
	e.process()
	second := recv(t, dispatched, "the second dispatch")
	require.Equal(t, 2, second.Attempt)
	wiretest.Require(t, "dispatch.json", w.body(q.RunID, 2), ids)

	r = e.do("POST", "/api/heartbeat", wiretest.Body(t, "heartbeat-request.json", ids), second.StorageToken)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	wiretest.Require(t, "heartbeat-response.json", r.Body, ids)
	r = e.do("POST", "/api/callback/"+q.RunID, wiretest.Body(t, "callback-success-request.json", ids), second.StorageToken)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	wiretest.Require(t, "callback-success-response.json", r.Body, ids)

	r = e.do("GET", "/api/task-runs/"+q.RunID, nil, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	wiretest.Require(t, "task-run.json", r.Body, ids)
}

// body is the raw body of the dispatch of run's attempt (nil if there was none).
func (w *worker) body(runID string, attempt int) []byte {
	bodies := w.Bodies()
	for i, d := range w.Dispatches()[:len(bodies)] {
		if d.RunID == runID && d.Attempt == attempt {
			return bodies[i]
		}
	}
	return nil
}

// TestWireFormatOfMaintenance pins GET /api/maintenance and POST /api/maintenance/enter (also
// what `pipeweave maintenance status --json` prints) to the fixtures of testdata/wire.
func TestWireFormatOfMaintenance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct{ method, path, fixture string }{
		{"GET", "/api/maintenance", "maintenance-status.json"},
		{"POST", "/api/maintenance/enter", "maintenance-enter.json"},
	} {
		r := e.do(c.method, c.path, nil, "")
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		var st struct {
			ModeChangedAt string `json:"modeChangedAt"`
		}
		r.json(t, &st)
		require.NotEmpty(t, st.ModeChangedAt)
		wiretest.Require(t, c.fixture, r.Body, wiretest.Subst{st.ModeChangedAt: "<modeChangedAt>"})
	}
}
