package engine

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// TestStaleLeaseIsRefused: once an attempt's lease moved on (the sweep ended it and the run was
// claimed again), the old attempt's heartbeat and callback are conflicts that change nothing.
func TestStaleLeaseIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(3), RetryDelayMs: ptr(int64(1000))}})
	h.enqueue(t, "t", 0, 1)
	ctx := context.Background()
	first := h.claimOne(t)
	h.clock.Advance(time.Hour)
	n, err := h.eng.Sweep(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	h.clock.Advance(time.Hour)
	second := h.claimOne(t)
	require.Equal(t, first.RunID, second.RunID)
	require.Greater(t, second.Lease, first.Lease)
	before := h.run(t, first.RunID)

	hb, err := h.eng.Heartbeat(ctx, WorkerCall{RunID: first.RunID, Lease: &first.Lease}, ptr(50), "old")
	require.ErrorIs(t, err, ErrConflict)
	require.True(t, hb.ShouldCancel)
	for _, status := range []string{protocol.CallbackSuccess, protocol.CallbackFailed} {
		_, err = h.eng.Callback(ctx, WorkerCall{RunID: first.RunID, Lease: &first.Lease}, &protocol.CallbackRequest{Status: status})
		require.ErrorIs(t, err, ErrConflict, status)
	}
	require.Equal(t, before, h.run(t, first.RunID), "the stale calls changed nothing")

	hb, err = h.eng.Heartbeat(ctx, WorkerCall{RunID: second.RunID, Lease: &second.Lease}, ptr(50), "current")
	require.NoError(t, err)
	require.True(t, hb.Acknowledged)
	require.Equal(t, ptr(50), h.run(t, second.RunID).Progress)
}

// TestDuplicateCallbackAppliesOnce: a worker's repeated callback (a retry after a lost answer)
// applies once, then reports the run's state without changing it.
func TestDuplicateCallbackAppliesOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "ok"}, {ID: "bad", Retries: ptr(3)}})
	h.enqueue(t, "ok", 0, 1)
	h.enqueue(t, "bad", 1, 1)
	ctx := context.Background()
	for _, cb := range []*protocol.CallbackRequest{
		{Status: protocol.CallbackSuccess},
		{Status: protocol.CallbackFailed, Error: "boom"},
	} {
		c := h.claimOne(t)
		call := WorkerCall{RunID: c.RunID, Lease: &c.Lease}
		res, err := h.eng.Callback(ctx, call, cb)
		require.NoError(t, err)
		require.True(t, res.Applied, cb.Status)
		after := h.run(t, c.RunID)
		again, err := h.eng.Callback(ctx, call, cb)
		require.NoError(t, err, cb.Status)
		require.False(t, again.Applied, cb.Status)
		require.Equal(t, res.Status, again.Status)
		require.Equal(t, after, h.run(t, c.RunID), "%s: the duplicate changed nothing", cb.Status)
	}
	require.Equal(t, 1, h.count(t, `SELECT jsonb_array_length(previous_attempts) FROM task_runs WHERE task_id = 'bad'`),
		"the failed attempt is recorded once")
}
