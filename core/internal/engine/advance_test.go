package engine

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// TestJoinIsEnabledOnce: in a diamond a → (b, c) → d, b and c report at the same moment; d
// becomes pending exactly once, and only when both did. Raced round after round.
func TestJoinIsEnabledOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a", AllowedNext: []string{"b", "c"}}, {ID: "b", AllowedNext: []string{"d"}},
		{ID: "c", AllowedNext: []string{"d"}}, {ID: "d"}}, protocol.PipelineDefinition{ID: "diamond", EntryTasks: []string{"a"}})
	ctx := context.Background()

	// One after the other first: d stays waiting until its second predecessor completed.
	tr, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	h.succeed(t, h.claimOne(t))
	h.succeed(t, h.claimOne(t))
	waiting := `SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND task_id = 'd' AND status = 'waiting'`
	require.Equal(t, 1, h.count(t, waiting, tr.PipelineRunID), "one predecessor of two does not enable d")
	h.succeed(t, h.claimOne(t))
	require.Equal(t, "d", h.claimOne(t).TaskID)
	h.exec(t, `UPDATE task_runs SET status = 'cancelled', completed_at = now() WHERE task_id = 'd'`)

	for round := range 8 {
		tr, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
		require.NoError(t, err)
		prun := tr.PipelineRunID
		h.succeed(t, h.claimOne(t))
		branches, err := h.eng.Claim(ctx, 10)
		require.NoError(t, err)
		require.Len(t, branches, 2, "round %d: b and c", round)
		require.Equal(t, 1, h.count(t, waiting, prun),
			"round %d: d waits for both", round)

		var wg sync.WaitGroup
		errs := make([]error, len(branches))
		applied := make([]bool, len(branches))
		for i, c := range branches {
			wg.Go(func() {
				res, err := h.eng.Callback(ctx, WorkerCall{RunID: c.RunID, Lease: &c.Lease}, &protocol.CallbackRequest{Status: protocol.CallbackSuccess})
				errs[i], applied[i] = err, res.Applied
			})
		}
		wg.Wait()
		for i := range branches {
			require.NoError(t, errs[i], "round %d", round)
			require.True(t, applied[i], "round %d", round)
		}
		require.Equal(t, 1, h.count(t, `SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND task_id = 'd'`, prun),
			"round %d: one run of d", round)
		join, err := h.eng.Claim(ctx, 10)
		require.NoError(t, err)
		require.Len(t, join, 1, "round %d: d was enabled once", round)
		require.Equal(t, "d", join[0].TaskID)
		h.succeed(t, join[0])
		run, err := h.eng.GetPipelineRun(ctx, prun)
		require.NoError(t, err)
		require.Equal(t, protocol.PipelineRunStatus("completed"), run.Status, "round %d", round)
	}
}
