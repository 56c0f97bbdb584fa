package engine

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// TestRetryWaitsItsBackoffThenFailsIntoTheDLQ: a failed attempt with retries left goes back to
// pending, available only after its jittered backoff (not claimed early); the last attempt fails
// for good with one DLQ entry holding every attempt.
func TestRetryWaitsItsBackoffThenFailsIntoTheDLQ(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	const delay = time.Minute
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(2), RetryBackoff: "exponential",
		RetryDelayMs: ptr(delay.Milliseconds()), MaxRetryDelayMs: ptr(int64(3 * delay / time.Millisecond))}})
	id := h.enqueue(t, "t", 0, 1)[0]
	ctx := context.Background()
	fail := func(attempt int) {
		t.Helper()
		c := h.claimOne(t)
		require.Equal(t, id, c.RunID)
		require.Equal(t, attempt, c.Attempt)
		_, err := h.eng.Callback(ctx, WorkerCall{RunID: c.RunID, Lease: &c.Lease},
			&protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "boom", ErrorCode: "E"})
		require.NoError(t, err)
	}
	// The backoff doubles from attempt to attempt (1 min, 2 min), jittered by ±20 %, capped at 3 min.
	for attempt, base := range []time.Duration{delay, 2 * delay} {
		now := h.clock.Now()
		fail(attempt + 1)
		r := h.run(t, id)
		require.Equal(t, string(protocol.StatusPending), r.Status)
		require.Equal(t, attempt+2, r.Attempt)
		require.Nil(t, r.Error, "a pending run has no error of its own")
		wait := r.AvailableAt.Sub(now)
		require.GreaterOrEqual(t, wait, time.Duration(float64(base)*0.8)-time.Second, "attempt %d", attempt+1)
		require.LessOrEqual(t, wait, time.Duration(float64(base)*1.2)+time.Second, "attempt %d", attempt+1)

		h.clock.Advance(time.Duration(float64(base) * 0.75))
		early, err := h.eng.Claim(ctx, 10)
		require.NoError(t, err)
		require.Empty(t, early, "attempt %d: not claimed before its backoff ends", attempt+1)
		h.clock.Advance(time.Duration(float64(base) * 0.5))
	}
	fail(3)
	r := h.run(t, id)
	require.Equal(t, string(protocol.StatusFailed), r.Status)
	require.Equal(t, 3, r.Attempt)
	require.Equal(t, "boom", *r.Error)
	page, err := h.eng.ListDLQ(ctx, DLQFilter{})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	require.Equal(t, id, page.Items[0].TaskRunID)
	require.Equal(t, 3, page.Items[0].Attempts)
	require.Len(t, page.Items[0].AttemptHistory, 3, "the entry holds every attempt")
}

func TestNonRetryableFailureSkipsTheRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(5)}})
	id := h.enqueue(t, "t", 0, 1)[0]
	c := h.claimOne(t)
	_, err := h.eng.Callback(context.Background(), WorkerCall{RunID: c.RunID, Lease: &c.Lease},
		&protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "bad input", Retryable: ptr(false)})
	require.NoError(t, err)
	require.Equal(t, string(protocol.StatusFailed), h.run(t, id).Status)
	require.Equal(t, 1, h.count(t, `SELECT count(*) FROM dlq WHERE task_run_id = $1`, id))
}
