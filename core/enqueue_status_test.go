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
