package protocol_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

func TestTaskRunStatuses(t *testing.T) {
	t.Parallel()
	var terminal []protocol.TaskRunStatus
	for _, s := range protocol.TaskRunStatuses {
		require.True(t, s.Valid(), s)
		if s.Terminal() {
			terminal = append(terminal, s)
		}
	}
	require.Equal(t, []protocol.TaskRunStatus{protocol.StatusCompleted, protocol.StatusFailed, protocol.StatusCancelled, protocol.StatusSkipped}, terminal)
	require.False(t, protocol.TaskRunStatus("queued").Valid())
	require.False(t, protocol.TaskRunStatus("").Terminal())
}

func TestPipelineRunStatuses(t *testing.T) {
	t.Parallel()
	for _, s := range protocol.PipelineRunStatuses {
		require.True(t, s.Valid(), s)
		require.Equal(t, s != protocol.PipelineRunning, s.Terminal(), s)
	}
	require.False(t, protocol.PipelineRunStatus("pending").Valid())
	require.False(t, protocol.PipelineRunStatus("pending").Terminal())
}

// The typed states are plain strings on the wire.
func TestStatusesOnTheWire(t *testing.T) {
	t.Parallel()
	raw, err := json.Marshal(protocol.PipelineRun{ID: "prun_1", Status: protocol.PipelinePartial,
		Tasks: []protocol.PipelineRunTask{{TaskRun: protocol.TaskRun{ID: "trun_1", Status: protocol.StatusSkipped}}}})
	require.NoError(t, err)
	var got struct {
		Status string `json:"status"`
		Tasks  []struct {
			Status string `json:"status"`
		} `json:"tasks"`
	}
	require.NoError(t, json.Unmarshal(raw, &got))
	require.Equal(t, "partial", got.Status)
	require.Equal(t, "skipped", got.Tasks[0].Status)
	var run protocol.PipelineRun
	require.NoError(t, json.Unmarshal([]byte(`{"status":"cancelled","tasks":[{"status":"waiting"}]}`), &run))
	require.Equal(t, protocol.PipelineCancelled, run.Status)
	require.Equal(t, protocol.StatusWaiting, run.Tasks[0].Status)
}
