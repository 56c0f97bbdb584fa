package engine

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// TestSweepEndsExpiredAttempts: each kind of deadline ends the attempt once it passed (and not
// before), retrying the run under a new lease so that the old attempt's late calls are refused.
func TestSweepEndsExpiredAttempts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// start moves the claimed attempt on (or not) as its worker would.
		heartbeat bool
		task      protocol.TaskDefinition
		// early is when the deadline has not passed yet, late when it has.
		early, late time.Duration
		code, msg   string
	}{
		{name: "dispatch lease", task: protocol.TaskDefinition{ID: "t"},
			early: 5 * time.Second, late: 21 * time.Second, code: "DISPATCH_FAILED", msg: "dispatch lease expired before the worker answered"},
		{name: "heartbeat", heartbeat: true, task: protocol.TaskDefinition{ID: "t", HeartbeatIntervalMs: ptr(int64(60_000))},
			early: time.Minute, late: 3 * time.Minute, code: "TIMEOUT", msg: "no heartbeat within 120000 ms"},
		{name: "hard timeout", heartbeat: true, task: protocol.TaskDefinition{ID: "t", Timeout: ptr(60), HeartbeatIntervalMs: ptr(int64(3_600_000))},
			early: 30 * time.Second, late: 2 * time.Minute, code: "TIMEOUT", msg: "task exceeded its timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Config{})
			tc.task.Retries = ptr(1)
			h.register(t, []protocol.TaskDefinition{tc.task})
			id := h.enqueue(t, "t", 0, 1)[0]
			ctx := context.Background()
			c := h.claimOne(t)
			if tc.heartbeat {
				_, err := h.eng.Heartbeat(ctx, WorkerCall{RunID: c.RunID, Lease: &c.Lease}, nil, "")
				require.NoError(t, err)
			}
			h.clock.Advance(tc.early)
			n, err := h.eng.Sweep(ctx, 0)
			require.NoError(t, err)
			require.Zero(t, n, "the deadline has not passed yet")

			h.clock.Advance(tc.late - tc.early)
			n, err = h.eng.Sweep(ctx, 0)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			r := h.run(t, id)
			require.Equal(t, string(protocol.StatusPending), r.Status, "retried")
			require.Equal(t, 2, r.Attempt)
			require.Equal(t, c.Lease+1, r.Lease, "the lease moved on")
			var code, msg string
			require.NoError(t, h.pool.QueryRow(ctx, `SELECT previous_attempts->0->>'errorCode', previous_attempts->0->>'error'
				FROM task_runs WHERE id = $1`, id).Scan(&code, &msg))
			require.Equal(t, tc.code, code)
			require.Equal(t, tc.msg, msg)

			_, err = h.eng.Callback(ctx, WorkerCall{RunID: c.RunID, Lease: &c.Lease}, &protocol.CallbackRequest{Status: protocol.CallbackSuccess})
			require.ErrorIs(t, err, ErrConflict, "the swept attempt's late callback")
			n, err = h.eng.Sweep(ctx, 0)
			require.NoError(t, err)
			require.Zero(t, n, "an ended attempt is swept once")
		})
	}
}

// TestCallbackCommittedFirstWinsOverTheSweep: a callback that committed before the sweep keeps
// its result; raced against the sweep, exactly one of them ends the attempt, round after round.
func TestCallbackCommittedFirstWinsOverTheSweep(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(3)}})
	ctx := context.Background()

	id := h.enqueue(t, "t", 0, 1)[0]
	c := h.claimOne(t)
	h.clock.Advance(time.Hour) // the deadline passed, but the callback commits first
	h.succeed(t, c)
	n, err := h.eng.Sweep(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, string(protocol.StatusCompleted), h.run(t, id).Status)

	for round := range 10 {
		id := h.enqueue(t, "t", 0, 1)[0]
		c := h.claimOne(t)
		h.clock.Advance(time.Hour)
		var (
			wg       sync.WaitGroup
			res      CallbackResult
			cbErr    error
			swept    int
			sweepErr error
		)
		wg.Go(func() {
			res, cbErr = h.eng.Callback(ctx, WorkerCall{RunID: c.RunID, Lease: &c.Lease},
				&protocol.CallbackRequest{Status: protocol.CallbackSuccess})
		})
		wg.Go(func() { swept, sweepErr = h.eng.Sweep(ctx, 0) })
		wg.Wait()
		require.NoError(t, sweepErr, "round %d", round)
		r := h.run(t, id)
		if cbErr == nil {
			require.True(t, res.Applied, "round %d", round)
			require.Zero(t, swept, "round %d: the callback won, the sweep must not end the attempt", round)
			require.Equal(t, string(protocol.StatusCompleted), r.Status, "round %d", round)
		} else {
			require.ErrorIs(t, cbErr, ErrConflict, "round %d", round)
			require.Equal(t, 1, swept, "round %d", round)
			require.Equal(t, string(protocol.StatusPending), r.Status, "round %d: the sweep won, the run is retried", round)
			h.exec(t, `UPDATE task_runs SET status = 'cancelled', completed_at = now() WHERE id = $1`, id)
		}
	}
}
