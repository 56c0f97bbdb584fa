package engine

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// TestGroupCommitCountsAndAnnouncesItsCompletionsOnce: a group commit, whether it claims (the
// loop runs) or not, counts its completions and queues their task_run.completed deliveries in
// its own statement (migrations 023, 024), once per run, with the row triggers' payload, and
// statements after it go through the triggers again.
func TestGroupCommitCountsAndAnnouncesItsCompletionsOnce(t *testing.T) {
	t.Parallel()
	for _, loop := range []bool{true, false} {
		t.Run(map[bool]string{true: "claiming", false: "alone"}[loop], func(t *testing.T) {
			t.Parallel()
			groupCommitCountsOnce(t, loop)
		})
	}
}

func groupCommitCountsOnce(t *testing.T, loop bool) {
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	if loop {
		r := &refills{}
		h.eng.SetRefill(r.dispatch)
	}
	h.exec(t, `INSERT INTO webhooks (id, url, events, secret)
		VALUES ('wh', 'https://hooks.example.com/x', '{task_run.completed,task_run.cancelled}', 'whsec_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0')`)
	ctx := context.Background()
	const n = 6
	h.enqueue(t, "t", 0, n)
	claimed, err := h.eng.Claim(ctx, n)
	require.NoError(t, err)
	require.Len(t, claimed, n)
	ctxs, calls, cbs := make([]context.Context, n), make([]WorkerCall, n), make([]*protocol.CallbackRequest, n)
	for i, c := range claimed {
		ctxs[i], calls[i], cbs[i] = ctx, call(c), success()
	}
	res, errs := h.eng.CallbackMany(ctxs, calls, cbs)
	for i := range res {
		require.NoError(t, errs[i])
		require.True(t, res[i].Applied)
	}

	completed := `SELECT coalesce(sum(n), 0)::int FROM (SELECT n FROM run_status_counts WHERE status = $1
		UNION ALL SELECT n FROM run_status_deltas WHERE status = $1) c`
	require.Equal(t, n, h.count(t, completed, "completed"), "each completion counted once")
	require.Positive(t, h.count(t, `SELECT count(*) FROM run_status_deltas WHERE status = 'completed' AND n > 1`),
		"counted by the statement, not row by row")
	type delivery struct {
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	deliveries := func(event string) map[string]delivery {
		rows, err := h.pool.Query(ctx, `SELECT payload FROM webhook_deliveries WHERE event = $1`, event)
		require.NoError(t, err)
		defer rows.Close()
		out := map[string]delivery{}
		for rows.Next() {
			var payload string
			require.NoError(t, rows.Scan(&payload))
			var d delivery
			require.NoError(t, json.Unmarshal([]byte(payload), &d))
			var data struct {
				RunID string `json:"runId"`
			}
			require.NoError(t, json.Unmarshal(d.Data, &data))
			_, dup := out[data.RunID]
			require.False(t, dup, "one delivery per run")
			out[data.RunID] = d
		}
		require.NoError(t, rows.Err())
		return out
	}
	got := deliveries("task_run.completed")
	require.Len(t, got, n)
	for _, c := range claimed {
		d, ok := got[c.RunID]
		require.True(t, ok, c.RunID)
		require.Equal(t, "task_run.completed", d.Type)
		var want json.RawMessage
		require.NoError(t, h.pool.QueryRow(ctx, `SELECT webhook_task_run_data(id, task_id, status, attempt, error, error_code,
			metadata, schedule_id, schedule_slot, created_at, completed_at) FROM task_runs WHERE id = $1`, c.RunID).Scan(&want))
		require.JSONEq(t, string(want), string(d.Data))
	}

	// A later change goes through the triggers: the same envelope, counted.
	more := h.enqueue(t, "t", 0, 1)
	h.exec(t, `UPDATE task_runs SET status = 'cancelled', completed_at = now() WHERE id = $1`, more[0])
	require.Equal(t, 1, h.count(t, completed, "cancelled"))
	cancelled := deliveries("task_run.cancelled")
	require.Len(t, cancelled, 1)
	byTrigger, bulk := cancelled[more[0]], got[claimed[0].RunID]
	require.Equal(t, len(byTrigger.Timestamp), len(bulk.Timestamp), "the same timestamp format: %s, %s", byTrigger.Timestamp, bulk.Timestamp)
	var keysT, keysB map[string]any
	require.NoError(t, json.Unmarshal(byTrigger.Data, &keysT))
	require.NoError(t, json.Unmarshal(bulk.Data, &keysB))
	for _, k := range []string{"runId", "taskId", "status", "attempt", "createdAt", "completedAt"} {
		require.Contains(t, keysT, k)
		require.Contains(t, keysB, k)
	}
}
