package core_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// The enqueue answer's status is the run's status, so the first answer and the answer to a
// repeated idempotency key agree while the run waits, and the repeat reports where it is later.
func TestEnqueueStatusIsTheRunsStatusForNewAndRepeatedKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone })
	w := newWorker(t, e.url)
	w.after = func(d protocol.DispatchRequest) { w.callback(d, success(d)) }
	e.register("svc", "1", w.URL(), task("charge"))

	body := map[string]any{"taskId": "charge", "input": 1, "idempotencyKey": "order-1"}
	first := e.enqueue(body)
	require.Equal(t, protocol.StatusPending, first.Status)
	require.Equal(t, protocol.StatusPending, e.run(first.RunID).Status)

	r := e.do("POST", "/api/queue/task", body, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var again enqueued
	r.json(t, &again)
	require.True(t, again.Deduplicated)
	require.Equal(t, first.RunID, again.RunID)
	require.Equal(t, first.Status, again.Status, "the same key again answers the same status while the run waits")

	// A batch answers the same way.
	r = e.do("POST", "/api/queue/batch", map[string]any{"tasks": []any{
		map[string]any{"taskId": "charge", "input": 2},
		body,
	}}, "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	var batch struct {
		Results []enqueued `json:"results"`
	}
	r.json(t, &batch)
	require.Len(t, batch.Results, 2)
	require.Equal(t, protocol.StatusPending, batch.Results[0].Status)
	require.Equal(t, protocol.StatusPending, batch.Results[1].Status)
	require.Equal(t, first.RunID, batch.Results[1].RunID)

	// Once the run has completed, the key reports that.
	e.process()
	e.waitStatus(first.RunID, protocol.StatusCompleted)
	r = e.do("POST", "/api/queue/task", body, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	r.json(t, &again)
	require.Equal(t, protocol.StatusCompleted, again.Status)
}

// An idempotency key whose TTL has passed no longer deduplicates: the next enqueue with it,
// alone or in a batch, makes a new run and takes the key over for the task's TTL.
func TestExpiredIdempotencyKeyIsTakenOverByANewEnqueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("charge", func(td *protocol.TaskDefinition) { td.IdempotencyTTL = ptr(3600) }))
	body := map[string]any{"taskId": "charge", "input": 1, "idempotencyKey": "order-1"}
	first := e.enqueue(body)
	holder := func() string {
		var runID string
		require.NoError(t, e.pool.QueryRow(t.Context(), `SELECT run_id FROM idempotency_keys
			WHERE task_id = 'charge' AND key = 'order-1' AND expires_at - created_at = interval '1 hour'`).Scan(&runID))
		return runID
	}
	require.Equal(t, first.RunID, holder())
	expire := func() {
		_, err := e.pool.Exec(t.Context(), "UPDATE idempotency_keys SET expires_at = now() - interval '1 millisecond' WHERE key = 'order-1'")
		require.NoError(t, err)
	}

	expire()
	second := e.enqueue(body)
	require.False(t, second.Deduplicated)
	require.NotEqual(t, first.RunID, second.RunID)
	require.Equal(t, second.RunID, holder(), "the new run holds the key for the task's TTL")
	// The key is live again: a repeat finds the new run.
	r := e.do("POST", "/api/queue/task", body, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var again enqueued
	r.json(t, &again)
	require.True(t, again.Deduplicated)
	require.Equal(t, second.RunID, again.RunID)

	// A batch takes an expired key over the same way.
	expire()
	r = e.do("POST", "/api/queue/batch", map[string]any{"tasks": []any{body}}, "")
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	var batch struct {
		Results []enqueued `json:"results"`
	}
	r.json(t, &batch)
	require.Len(t, batch.Results, 1)
	third := batch.Results[0]
	require.False(t, third.Deduplicated)
	require.NotContains(t, []string{first.RunID, second.RunID}, third.RunID)
	require.Equal(t, third.RunID, holder())
	require.Equal(t, 3, e.count("SELECT count(*) FROM task_runs WHERE idempotency_key = 'order-1'"), "the earlier runs are kept")
}

// POST /api/idempotency/check finds a result recorded under a key only while the key lives.
func TestIdempotencyCheckIgnoresAnExpiredKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	dispatched := make(chan protocol.DispatchRequest, 2)
	w.after = func(d protocol.DispatchRequest) { dispatched <- d }
	e.register("svc", "1", w.URL(), task("render"))
	e.enqueue(map[string]any{"taskId": "render", "input": 1})
	src := recv(t, dispatched, "the first dispatch")
	status, body := w.callback(src, protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(src.RunID),
		OutputSize: 2, IdempotencyKey: "k"})
	require.Equal(t, http.StatusOK, status, "%s", body)
	e.enqueue(map[string]any{"taskId": "render", "input": 2})
	d := recv(t, dispatched, "the second dispatch")

	check := func() protocol.IdempotencyCheckResponse {
		status, body, err := post(e.url+"/api/idempotency/check", protocol.IdempotencyCheckRequest{RunID: d.RunID, Key: "k"}, d.StorageToken)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, "%s", body)
		var res protocol.IdempotencyCheckResponse
		response{Status: status, Body: body}.json(t, &res)
		return res
	}
	hit := check()
	require.True(t, hit.Hit)
	require.Equal(t, src.RunID, hit.RunID)

	_, err := e.pool.Exec(t.Context(), "UPDATE idempotency_keys SET expires_at = now() - interval '1 millisecond' WHERE key = 'k'")
	require.NoError(t, err)
	require.False(t, check().Hit, "an expired key is no hit")
}
