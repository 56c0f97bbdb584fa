package engine

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// TestDLQRetryRequeuesOnce: retries of one DLQ entry raced from several goroutines make one
// new run; the others are conflicts naming it.
func TestDLQRetryRequeuesOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(0)}})
	ctx := context.Background()
	for round := range 4 {
		id := h.enqueue(t, "t", 0, 1)[0]
		c := h.claimOne(t)
		_, err := h.eng.Callback(ctx, WorkerCall{RunID: c.RunID, Lease: &c.Lease}, &protocol.CallbackRequest{Status: protocol.CallbackFailed})
		require.NoError(t, err)
		var entry string
		require.NoError(t, h.pool.QueryRow(ctx, `SELECT id FROM dlq WHERE task_run_id = $1`, id).Scan(&entry))

		const retriers = 5
		var wg sync.WaitGroup
		results := make([]DLQRetryResult, retriers)
		errs := make([]error, retriers)
		for i := range retriers {
			wg.Go(func() { results[i], errs[i] = h.eng.RetryDLQ(ctx, entry) })
		}
		wg.Wait()
		var newRun string
		for i := range retriers {
			if errs[i] == nil {
				require.Empty(t, newRun, "round %d: retried twice", round)
				newRun = results[i].NewRunID
			}
		}
		require.NotEmpty(t, newRun, "round %d", round)
		for i := range retriers {
			if errs[i] != nil {
				require.ErrorIs(t, errs[i], ErrConflict, "round %d", round)
				var e *Error
				require.ErrorAs(t, errs[i], &e)
				require.Equal(t, map[string]string{"retryRunId": newRun}, e.Details, "round %d", round)
			}
		}
		require.Equal(t, 1, h.count(t, `SELECT count(*) FROM task_runs WHERE status = 'pending'`), "round %d: one new run", round)
		require.Equal(t, newRun, h.claimOne(t).RunID)
		h.succeed(t, Claimed{RunID: newRun, Lease: h.run(t, newRun).Lease})
	}
}

// TestPurgeDLQKeepsEntriesUntilTheyAreOld: the retention is measured against Config.Now.
func TestPurgeDLQKeepsEntriesUntilTheyAreOld(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(0)}})
	ctx := context.Background()
	h.enqueue(t, "t", 0, 1)
	c := h.claimOne(t)
	_, err := h.eng.Callback(ctx, WorkerCall{RunID: c.RunID, Lease: &c.Lease}, &protocol.CallbackRequest{Status: protocol.CallbackFailed})
	require.NoError(t, err)

	n, err := h.eng.PurgeDLQ(ctx, time.Hour)
	require.NoError(t, err)
	require.Zero(t, n, "an entry younger than the retention stays")
	h.clock.Advance(2 * time.Hour)
	n, err = h.eng.PurgeDLQ(ctx, time.Hour)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Zero(t, h.count(t, `SELECT count(*) FROM dlq`))
}

// A standalone DLQ retry whose input is not inline (in storage) keeps the failed run's
// concurrency key: it cannot be read from the input, and without it the retry escaped its key's limit.
func TestDLQRetryKeepsTheConcurrencyKeyOfAStoredInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(0), ConcurrencyKey: "/customerId", ConcurrencyPerKey: ptr(1)}})
	ctx := context.Background()
	res, _, err := h.eng.Enqueue(ctx, []EnqueueRequest{{TaskID: "t", Input: json.RawMessage(`{"customerId": "acme"}`)}})
	require.NoError(t, err)
	id := res[0].RunID
	c := h.claimOne(t)
	require.Equal(t, id, c.RunID)
	_, err = h.eng.Callback(ctx, WorkerCall{RunID: c.RunID, Lease: &c.Lease}, &protocol.CallbackRequest{Status: protocol.CallbackFailed})
	require.NoError(t, err)
	var entry string
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT id FROM dlq WHERE task_run_id = $1`, id).Scan(&entry))
	// As an entry whose input is in storage has it.
	h.exec(t, `UPDATE dlq SET input = NULL WHERE id = $1`, entry)
	retry, err := h.eng.RetryDLQ(ctx, entry)
	require.NoError(t, err)
	var key *string
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT concurrency_key FROM task_runs WHERE id = $1`, retry.NewRunID).Scan(&key))
	require.NotNil(t, key)
	require.Equal(t, `"acme"`, *key)
}

// When the failed run is gone too, a keyed task's retry of a stored input gets the empty key (limited
// by the task alone), not NULL, which the claim reads with the unkeyed runs behind held-back keyed ones.
func TestDLQRetryOfAStoredInputWithoutItsRunHasTheEmptyKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(0), ConcurrencyKey: "/customerId", ConcurrencyPerKey: ptr(1)}})
	ctx := context.Background()
	h.enqueue(t, "t", 0, 1)
	c := h.claimOne(t)
	_, err := h.eng.Callback(ctx, WorkerCall{RunID: c.RunID, Lease: &c.Lease}, &protocol.CallbackRequest{Status: protocol.CallbackFailed})
	require.NoError(t, err)
	var entry string
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT id FROM dlq WHERE task_run_id = $1`, c.RunID).Scan(&entry))
	h.exec(t, `UPDATE dlq SET input = NULL WHERE id = $1`, entry)
	h.exec(t, `DELETE FROM task_runs WHERE id = $1`, c.RunID)
	retry, err := h.eng.RetryDLQ(ctx, entry)
	require.NoError(t, err)
	var key *string
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT concurrency_key FROM task_runs WHERE id = $1`, retry.NewRunID).Scan(&key))
	require.NotNil(t, key)
	require.Equal(t, "", *key)
	require.Equal(t, retry.NewRunID, h.claimOne(t).RunID)
}
