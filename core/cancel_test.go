package core_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// cancelRun asks POST /api/task-runs/{id}/cancel.
func (e *env) cancelRun(id string) response {
	e.t.Helper()
	return e.do("POST", "/api/task-runs/"+id+"/cancel", nil, "")
}

// dlqTotal is the number of DLQ entries.
func (e *env) dlqTotal() int {
	e.t.Helper()
	r := e.do("GET", "/api/dlq", nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
	var list struct {
		Total int `json:"total"`
	}
	r.json(e.t, &list)
	return list.Total
}

// A pending run is cancelled at once and never claimed, even once it is due; cancelling it
// again is 409 with its status; an unknown run is 404.
func TestCancelPendingRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	// Delayed: the enqueue's own claim leaves it pending.
	q := e.enqueue(map[string]any{"taskId": "t", "delayMs": 3_600_000})
	require.Equal(t, protocol.StatusPending, e.run(q.RunID).Status)

	// A body other than {} is refused, and nothing is cancelled.
	for _, body := range []string{`{"reason":"x"}`, `null`, `[]`, `"x"`} {
		bad := e.do("POST", "/api/task-runs/"+q.RunID+"/cancel", body, "")
		require.Equal(t, http.StatusBadRequest, bad.Status, "%s: %s", body, bad.Body)
		require.Equal(t, protocol.StatusPending, e.run(q.RunID).Status)
	}

	r := e.do("POST", "/api/task-runs/"+q.RunID+"/cancel", map[string]any{}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var got run
	r.json(t, &got)
	require.Equal(t, protocol.StatusCancelled, got.Status)
	require.Equal(t, "CANCELLED", *got.ErrorCode)
	require.Equal(t, "cancelled by request", *got.Error)
	require.NotNil(t, got.CompletedAt)

	_, err := e.pool.Exec(context.Background(), "UPDATE task_runs SET available_at = now() WHERE id = $1", q.RunID)
	require.NoError(t, err)
	require.Zero(t, e.process().Claimed, "a cancelled run is not claimed")
	require.Zero(t, w.count())
	require.Equal(t, protocol.StatusCancelled, e.run(q.RunID).Status)
	require.Zero(t, e.dlqTotal())

	again := e.cancelRun(q.RunID)
	require.Equal(t, http.StatusConflict, again.Status)
	body := again.errorBody(t)
	require.Equal(t, "RUN_FINISHED", body.Code)
	require.Equal(t, map[string]any{"status": "cancelled"}, body.Details)

	missing := e.cancelRun("trun_nope")
	require.Equal(t, http.StatusNotFound, missing.Status)
	require.Equal(t, "RUN_NOT_FOUND", missing.errorBody(t).Code)
}

// A run waiting for its retry (pending, attempt 2) is cancelled like any pending run and goes
// to no DLQ.
func TestCancelRunWaitingForRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) {
		w.callback(d, protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "flaky"})
	}
	e.register("svc", "1", w.URL(), task("t", withRetries(3, 3_600_000)))
	q := e.enqueue(map[string]any{"taskId": "t"})
	e.process()
	e.waitMoved("the retry to be scheduled", func() bool {
		r := e.run(q.RunID)
		return r.Status == protocol.StatusPending && r.Attempt == 2
	})
	r := e.cancelRun(q.RunID)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	got := e.run(q.RunID)
	require.Equal(t, protocol.StatusCancelled, got.Status)
	require.Len(t, got.PreviousAttempts, 1, "the failed attempt stays on record")
	require.Zero(t, e.dlqTotal())
	// Once the retry is due, it is not claimed: only the first attempt was ever dispatched.
	_, err := e.pool.Exec(context.Background(), "UPDATE task_runs SET available_at = now() WHERE id = $1", q.RunID)
	require.NoError(t, err)
	require.Zero(t, e.process().Claimed)
	require.Equal(t, 1, w.count())
}

// A dispatched run is cancelled at once: its worker's next heartbeat answers shouldCancel, and
// its late callbacks, success or failure, change nothing and reach no DLQ.
func TestCancelRunningRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t", withRetries(0, 0)))
	ok := e.enqueue(map[string]any{"taskId": "t"})
	failing := e.enqueue(map[string]any{"taskId": "t"})
	e.process()
	w.waitDispatches(2)
	byRun := map[string]protocol.DispatchRequest{}
	for _, d := range w.all() {
		byRun[d.RunID] = d
	}
	for _, id := range []string{ok.RunID, failing.RunID} {
		e.waitStatus(id, protocol.StatusRunning)
		r := e.cancelRun(id)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		status, hb := w.heartbeat(byRun[id], ptr(50), "")
		require.Equal(t, http.StatusOK, status)
		require.True(t, hb.ShouldCancel, "the worker is told to stop")
	}

	status, body := w.callback(byRun[ok.RunID], success(byRun[ok.RunID]))
	require.Equal(t, http.StatusOK, status, string(body))
	require.JSONEq(t, `{"acknowledged": true, "applied": false, "status": "cancelled"}`, string(body))
	status, body = w.callback(byRun[failing.RunID], protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "boom", Retryable: new(bool)})
	require.Equal(t, http.StatusOK, status, string(body))
	require.JSONEq(t, `{"acknowledged": true, "applied": false, "status": "cancelled"}`, string(body))

	for _, id := range []string{ok.RunID, failing.RunID} {
		got := e.run(id)
		require.Equal(t, protocol.StatusCancelled, got.Status)
		require.Nil(t, got.OutputPath)
	}
	require.Zero(t, e.dlqTotal())
	// Cancelled runs are out of flight: the queue counts them as cancelled.
	r := e.do("GET", "/api/queue/status", nil, "")
	require.Equal(t, http.StatusOK, r.Status)
	var qs protocol.QueueStatus
	r.json(t, &qs)
	require.Zero(t, qs.Running+qs.Dispatching+qs.Pending)
	require.EqualValues(t, 2, qs.Cancelled)
}

// A task run of a pipeline run is not cancelled on its own: 409 names its pipeline run.
func TestCancelPipelineTaskRunRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	diamond(e, w.URL())
	prun := e.trigger("dia", nil)
	a := e.pipelineRun(prun).node("a").ID
	require.NotEmpty(t, a)
	r := e.cancelRun(a)
	require.Equal(t, http.StatusConflict, r.Status)
	body := r.errorBody(t)
	require.Equal(t, "PIPELINE_TASK_RUN", body.Code)
	require.Equal(t, map[string]any{"pipelineRunId": prun}, body.Details)
	require.Contains(t, body.Error, "/api/runs/"+prun+"/cancel")
	require.NotEqual(t, "cancelled", e.pipelineRun(prun).node("a").Status)
}

// With API keys configured, cancelling needs one.
func TestCancelRunNeedsKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.APIKeys = []string{"key-one"} })
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	r := e.do("POST", "/api/queue/task", map[string]any{"taskId": "t", "delayMs": 3_600_000}, "key-one")
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	var q enqueued
	r.json(t, &q)
	for _, key := range []string{"", "wrong"} {
		r := e.do("POST", "/api/task-runs/"+q.RunID+"/cancel", nil, key)
		require.Equal(t, http.StatusUnauthorized, r.Status)
	}
	require.Equal(t, protocol.StatusPending, statusOf(t, e.do("GET", "/api/task-runs/"+q.RunID, nil, "key-one")))
	r = e.do("POST", "/api/task-runs/"+q.RunID+"/cancel", nil, "key-one")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
}

func statusOf(t *testing.T, r response) protocol.TaskRunStatus {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var got run
	r.json(t, &got)
	return got.Status
}

// A cancel racing the worker's success callback: exactly one wins, and the answers say which.
// Either the cancel is 200, the run ends cancelled and the callback was not applied, or the
// callback was applied, the run completed and the cancel is 409 RUN_FINISHED.
func TestCancelRacesCallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	const rounds = 25
	ids := make([]string, rounds)
	for i := range ids {
		ids[i] = e.enqueue(map[string]any{"taskId": "t", "input": map[string]int{"i": i}}).RunID
	}
	for e.process().Claimed > 0 {
	}
	w.waitDispatches(rounds)
	var cancelled, completed int
	for _, d := range w.all() {
		var wg sync.WaitGroup
		var cancel response
		var cbStatus int
		var cbBody []byte
		wg.Add(2)
		var cancelErr error
		go func() {
			defer wg.Done()
			cancel, cancelErr = e.send("POST", "/api/task-runs/"+d.RunID+"/cancel", nil, "")
		}()
		go func() { defer wg.Done(); cbStatus, cbBody = w.callback(d, success(d)) }()
		wg.Wait()
		require.NoError(t, cancelErr)
		require.Equal(t, http.StatusOK, cbStatus, string(cbBody))
		var cb struct {
			Applied bool                   `json:"applied"`
			Status  protocol.TaskRunStatus `json:"status"`
		}
		require.NoError(t, json.Unmarshal(cbBody, &cb))
		final := e.run(d.RunID).Status
		require.Equal(t, final, cb.Status, "run %s: the callback's answer names the status the run ended in", d.RunID)
		switch cancel.Status {
		case http.StatusOK:
			cancelled++
			require.False(t, cb.Applied, "run %s: cancelled, yet the callback was applied", d.RunID)
			require.Equal(t, protocol.StatusCancelled, final)
		case http.StatusConflict:
			completed++
			require.True(t, cb.Applied, "run %s: the cancel lost, yet the callback was not applied", d.RunID)
			require.Equal(t, "RUN_FINISHED", cancel.errorBody(t).Code)
			require.Equal(t, protocol.StatusCompleted, final)
		default:
			t.Fatalf("run %s: cancel answered %d: %s", d.RunID, cancel.Status, cancel.Body)
		}
	}
	t.Logf("cancel won %d, callback won %d", cancelled, completed)
}
