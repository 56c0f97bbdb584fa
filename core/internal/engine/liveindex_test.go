package engine

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// TestLiveCountsEachState: the live counts (one partial index per state, migration 022) count
// waiting pipeline nodes, pending runs and runs in flight apart, and nothing final.
func TestLiveCountsEachState(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, append(diamondTasks(), protocol.TaskDefinition{ID: "solo"}),
		protocol.PipelineDefinition{ID: "diamond", EntryTasks: []string{"a"}})
	ctx := context.Background()

	_, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	h.enqueue(t, "solo", 0, 3)
	claimed, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 4, "the entry task and the three solo runs")
	var solo []Claimed
	for _, c := range claimed {
		if c.TaskID == "solo" {
			solo = append(solo, c)
		}
	}
	require.Len(t, solo, 3)
	h.exec(t, `UPDATE task_runs SET status = 'running' WHERE id = $1`, solo[0].RunID)
	h.succeed(t, solo[1])
	h.enqueue(t, "solo", 0, 2)

	counts, err := h.eng.LiveCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"waiting": 3, "pending": 2, "dispatching": 2, "running": 1}, counts,
		"b, c and d wait; a and one solo run dispatch, one runs, one completed, two are new")
}

// TestOrphanedTaskCancelsItsWaitingAndPendingRuns: a service version that drops tasks cancels
// their pending runs and their waiting pipeline nodes (one index scan each, migration 022), and
// leaves their runs in flight and every run of the tasks it keeps.
func TestOrphanedTaskCancelsItsWaitingAndPendingRuns(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, append(diamondTasks(), protocol.TaskDefinition{ID: "solo"}, protocol.TaskDefinition{ID: "kept"}),
		protocol.PipelineDefinition{ID: "diamond", EntryTasks: []string{"a"}})
	ctx := context.Background()

	tr, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	inFlight := h.claimOne(t) // the diamond's entry task, the only run so far
	require.Equal(t, "a", inFlight.TaskID)
	solo := h.enqueue(t, "solo", 0, 2)
	kept := h.enqueue(t, "kept", 0, 1)
	b, d := h.nodeRun(t, tr.PipelineRunID, "b"), h.nodeRun(t, tr.PipelineRunID, "d")

	// Version 2 keeps a, c and kept: b, d and solo are removed.
	_, err = h.eng.Register(ctx, &protocol.RegisterRequest{ServiceID: "svc", Version: "2", BaseURL: h.baseURL,
		Tasks: []protocol.TaskDefinition{{ID: "a", CodeHash: "hash-a"}, {ID: "c", CodeHash: "hash-c"}, {ID: "kept", CodeHash: "hash-kept"}}}, "")
	require.NoError(t, err)

	for _, id := range append([]string{b, d}, solo...) {
		r := h.run(t, id)
		require.Equal(t, "cancelled", r.Status, id)
	}
	require.Equal(t, "dispatching", h.run(t, inFlight.RunID).Status, "a run in flight finishes")
	require.Equal(t, "waiting", h.run(t, h.nodeRun(t, tr.PipelineRunID, "c")).Status, "a kept task's node waits on")
	require.Equal(t, "pending", h.run(t, kept[0]).Status)
}
