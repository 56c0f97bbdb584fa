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

// diamondTasks are a → (b, c) → d.
func diamondTasks() []protocol.TaskDefinition {
	return []protocol.TaskDefinition{{ID: "a", AllowedNext: []string{"b", "c"}}, {ID: "b", AllowedNext: []string{"d"}},
		{ID: "c", AllowedNext: []string{"d"}}, {ID: "d"}}
}

// nodeStates are the statuses of a pipeline run's nodes by task id.
func nodeStates(run PipelineRun) map[string]string {
	out := map[string]string{}
	for _, n := range run.Tasks {
		out[n.TaskID] = string(n.Status)
	}
	return out
}

// TestTriggerStoresTheDeadline: a run's deadline is the trigger's time plus the pipeline's
// timeoutMs, or the trigger's own, which overrides it; without either it has none.
func TestTriggerStoresTheDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a"}},
		protocol.PipelineDefinition{ID: "timed", EntryTasks: []string{"a"}, TimeoutMs: ptr(int64(60_000))},
		protocol.PipelineDefinition{ID: "untimed", EntryTasks: []string{"a"}})
	ctx := context.Background()
	h.clock.Advance(time.Hour) // the deadline follows the engine's clock, not the database's

	p, err := h.eng.GetPipeline(ctx, "timed")
	require.NoError(t, err)
	require.Equal(t, int64(60_000), *p.TimeoutMs)
	p, err = h.eng.GetPipeline(ctx, "untimed")
	require.NoError(t, err)
	require.Nil(t, p.TimeoutMs)

	for _, tc := range []struct {
		name, pipeline string
		override       *int64
		want           *int64
	}{
		{"the pipeline's", "timed", nil, ptr(int64(60_000))},
		{"the trigger's overrides it", "timed", ptr(int64(5_000)), ptr(int64(5_000))},
		{"the trigger's alone", "untimed", ptr(int64(7_000)), ptr(int64(7_000))},
		{"none", "untimed", nil, nil},
	} {
		before := h.clock.Now()
		tr, err := h.eng.Trigger(ctx, tc.pipeline, TriggerRequest{Input: json.RawMessage(`{}`), TimeoutMs: tc.override})
		require.NoError(t, err, tc.name)
		after := h.clock.Now()
		run, err := h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
		require.NoError(t, err, tc.name)
		if tc.want == nil {
			require.Nil(t, run.TimeoutMs, tc.name)
			require.Nil(t, run.Deadline, tc.name)
			continue
		}
		require.Equal(t, *tc.want, *run.TimeoutMs, tc.name)
		require.NotNil(t, run.Deadline, tc.name)
		d := time.Duration(*tc.want) * time.Millisecond
		require.False(t, run.Deadline.Before(before.Add(d).Truncate(time.Microsecond)), tc.name)
		require.False(t, run.Deadline.After(after.Add(d)), tc.name)
	}
}

// TestTriggerRefusesABadTimeout: timeoutMs 0, negative or over 30 days is INVALID_TIMEOUT, on a
// pipeline's declaration (PUT, registration) and on a trigger, and nothing is written.
func TestTriggerRefusesABadTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a"}}, protocol.PipelineDefinition{ID: "p", EntryTasks: []string{"a"}})
	ctx := context.Background()
	for _, ms := range []int64{0, -1, protocol.MaxPipelineTimeoutMs + 1} {
		_, err := h.eng.Trigger(ctx, "p", TriggerRequest{Input: json.RawMessage(`{}`), TimeoutMs: &ms})
		require.ErrorIs(t, err, ErrInvalid, "%d", ms)
		require.Equal(t, "INVALID_TIMEOUT", err.(*Error).Code)
		_, err = h.eng.PutPipeline(ctx, "q", protocol.PipelineDefinition{EntryTasks: []string{"a"}, TimeoutMs: &ms})
		require.ErrorIs(t, err, ErrInvalid, "%d", ms)
		require.Equal(t, "INVALID_TIMEOUT", err.(*Error).Code)
		_, err = h.eng.Register(ctx, &protocol.RegisterRequest{ServiceID: "svc2", Version: "1", BaseURL: h.baseURL,
			Tasks:     []protocol.TaskDefinition{{ID: "x", CodeHash: "h"}},
			Pipelines: []protocol.PipelineDefinition{{ID: "r", EntryTasks: []string{"x"}, TimeoutMs: &ms}}}, "")
		require.ErrorIs(t, err, ErrInvalid, "%d", ms)
		require.Equal(t, "INVALID_TIMEOUT", err.(*Error).Code)
	}
	require.Zero(t, h.count(t, `SELECT count(*) FROM pipeline_runs`))
	require.Zero(t, h.count(t, `SELECT count(*) FROM pipelines WHERE id IN ('q', 'r', 'svc2')`))
	// The largest timeout is accepted.
	_, err := h.eng.Trigger(ctx, "p", TriggerRequest{Input: json.RawMessage(`{}`), TimeoutMs: ptr(int64(protocol.MaxPipelineTimeoutMs))})
	require.NoError(t, err)
}

// TestSweepTimesOutAPipelineRun: once the deadline passed, the sweep fails the run with
// PIPELINE_TIMEOUT and cancels its nodes: waiting and pending ones, and the running one, whose
// heartbeat then answers shouldCancel and whose late callback changes nothing.
func TestSweepTimesOutAPipelineRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, diamondTasks(), protocol.PipelineDefinition{ID: "dia", EntryTasks: []string{"a"}, TimeoutMs: ptr(int64(60_000))})
	h.exec(t, `INSERT INTO webhooks (id, url, events, secret) VALUES ('w', 'http://127.0.0.1:9/', ARRAY['pipeline_run.failed'], 'whsec_x')`)
	ctx := context.Background()
	tr, err := h.eng.Trigger(ctx, "dia", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	h.succeed(t, h.claimOne(t)) // a
	b := h.claimOne(t)          // b (or c) runs; the other stays pending, d waiting
	_, err = h.eng.Heartbeat(ctx, WorkerCall{RunID: b.RunID, Lease: &b.Lease}, nil, "")
	require.NoError(t, err)

	h.clock.Advance(59 * time.Second)
	n, err := h.eng.Sweep(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n, "the deadline has not passed yet")
	run, err := h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineRunning, run.Status)

	h.clock.Advance(2 * time.Second)
	n, err = h.eng.Sweep(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	run, err = h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineFailed, run.Status)
	require.Equal(t, protocol.PipelineTimeout, run.ErrorCode)
	require.Equal(t, "pipeline run timed out after 60000 ms", *run.Error)
	require.NotNil(t, run.CompletedAt)
	require.Equal(t, map[string]string{"a": "completed", "b": "cancelled", "c": "cancelled", "d": "cancelled"}, nodeStates(run))
	for _, node := range run.Tasks {
		if node.TaskID != "a" {
			require.Equal(t, "the pipeline run timed out", *node.Error, node.TaskID)
			require.Equal(t, "CANCELLED", *node.ErrorCode, node.TaskID)
		}
	}
	var payload string
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT payload FROM webhook_deliveries WHERE event = 'pipeline_run.failed'`).Scan(&payload))
	require.Contains(t, payload, `"errorCode": "PIPELINE_TIMEOUT"`)

	hb, err := h.eng.Heartbeat(ctx, WorkerCall{RunID: b.RunID, Lease: &b.Lease}, nil, "")
	require.NoError(t, err)
	require.True(t, hb.ShouldCancel, "the running worker is told to stop")
	res, err := h.eng.Callback(ctx, WorkerCall{RunID: b.RunID, Lease: &b.Lease}, &protocol.CallbackRequest{Status: protocol.CallbackSuccess})
	require.NoError(t, err)
	require.False(t, res.Applied, "the late callback")
	claimed, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.Empty(t, claimed, "nothing of the run is claimed")
	run, err = h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineFailed, run.Status)
	require.Equal(t, map[string]string{"a": "completed", "b": "cancelled", "c": "cancelled", "d": "cancelled"}, nodeStates(run))
	require.Zero(t, h.count(t, `SELECT count(*) FROM dlq`))
	n, err = h.eng.Sweep(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n, "a run times out once")
	require.Equal(t, 1, h.count(t, `SELECT count(*) FROM webhook_deliveries`))
}

// TestSweepLeavesRunsWithinTheirDeadline: a run that finished before its deadline, and runs
// without one, are untouched by the sweep.
func TestSweepLeavesRunsWithinTheirDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a"}}, protocol.PipelineDefinition{ID: "p", EntryTasks: []string{"a"}, TimeoutMs: ptr(int64(1_000))},
		protocol.PipelineDefinition{ID: "q", EntryTasks: []string{"a"}})
	ctx := context.Background()
	done, err := h.eng.Trigger(ctx, "p", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	h.succeed(t, h.claimOne(t))
	open, err := h.eng.Trigger(ctx, "q", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	h.clock.Advance(time.Minute)
	n, err := h.eng.Sweep(ctx, 0)
	require.NoError(t, err)
	require.Zero(t, n)
	run, err := h.eng.GetPipelineRun(ctx, done.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineCompleted, run.Status)
	require.Empty(t, run.ErrorCode)
	require.Nil(t, run.Error)
	run, err = h.eng.GetPipelineRun(ctx, open.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineRunning, run.Status)
	require.Equal(t, map[string]string{"a": "pending"}, nodeStates(run))
}

// TestSweepDeadlineRacesTheLastCallback: the sweep of a passed deadline races the callback that
// completes the run's last node. The run ends exactly once (one pipeline_run.* event), either
// completed with the node completed, or failed with PIPELINE_TIMEOUT and the node cancelled.
func TestSweepDeadlineRacesTheLastCallback(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a", AllowedNext: []string{"b"}}, {ID: "b"}},
		protocol.PipelineDefinition{ID: "p", EntryTasks: []string{"a"}, TimeoutMs: ptr(int64(1_000))})
	h.exec(t, `INSERT INTO webhooks (id, url, events, secret) VALUES ('w', 'http://127.0.0.1:9/',
		ARRAY['pipeline_run.completed', 'pipeline_run.failed'], 'whsec_x')`)
	ctx := context.Background()
	rounds := 30
	if testing.Short() {
		rounds = 5
	}
	outcomes := map[protocol.PipelineRunStatus]int{}
	for round := range rounds {
		tr, err := h.eng.Trigger(ctx, "p", TriggerRequest{Input: json.RawMessage(`{}`)})
		require.NoError(t, err)
		h.succeed(t, h.claimOne(t))
		last := h.claimOne(t)
		require.Equal(t, "b", last.TaskID)
		h.clock.Advance(2 * time.Second)

		var wg sync.WaitGroup
		var cbErr, sweepErr error
		var res CallbackResult
		wg.Go(func() {
			res, cbErr = h.eng.Callback(ctx, WorkerCall{RunID: last.RunID, Lease: &last.Lease},
				&protocol.CallbackRequest{Status: protocol.CallbackSuccess})
		})
		wg.Go(func() { _, sweepErr = h.eng.Sweep(ctx, 0) })
		wg.Wait()
		require.NoError(t, cbErr, "round %d", round)
		require.NoError(t, sweepErr, "round %d", round)

		run, err := h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
		require.NoError(t, err)
		outcomes[run.Status]++
		switch run.Status {
		case protocol.PipelineCompleted:
			require.True(t, res.Applied, "round %d", round)
			require.Empty(t, run.ErrorCode, "round %d", round)
			require.Equal(t, map[string]string{"a": "completed", "b": "completed"}, nodeStates(run), "round %d", round)
		case protocol.PipelineFailed:
			require.False(t, res.Applied, "round %d", round)
			require.Equal(t, protocol.PipelineTimeout, run.ErrorCode, "round %d", round)
			require.Equal(t, map[string]string{"a": "completed", "b": "cancelled"}, nodeStates(run), "round %d", round)
		default:
			t.Fatalf("round %d: the run is %s", round, run.Status)
		}
		require.Equal(t, 1, h.count(t, `SELECT count(*) FROM webhook_deliveries WHERE payload::jsonb -> 'data' ->> 'pipelineRunId' = $1`,
			tr.PipelineRunID), "round %d: the run ended once", round)
		n, err := h.eng.Sweep(ctx, 0)
		require.NoError(t, err)
		require.Zero(t, n, "round %d", round)
	}
	t.Logf("outcomes: %v", outcomes)
}

// TestDLQRetryOfATimedOutRunIsRefused: a timed-out run is over, as a cancelled one is: the DLQ
// retry of a task that failed in it (continue mode) is 409 PIPELINE_RUN_TIMED_OUT and changes
// nothing.
func TestDLQRetryOfATimedOutRunIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a", AllowedNext: []string{"b", "c"}, Retries: ptr(0)}, {ID: "b", Retries: ptr(0)}, {ID: "c", Retries: ptr(0)}},
		protocol.PipelineDefinition{ID: "p", EntryTasks: []string{"a"}, FailureMode: Continue, TimeoutMs: ptr(int64(60_000))})
	ctx := context.Background()
	tr, err := h.eng.Trigger(ctx, "p", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	h.succeed(t, h.claimOne(t))
	branches, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, branches, 2)
	failed := branches[0]
	_, err = h.eng.Callback(ctx, WorkerCall{RunID: failed.RunID, Lease: &failed.Lease}, &protocol.CallbackRequest{Status: protocol.CallbackFailed,
		Error: "boom", Retryable: ptr(false)})
	require.NoError(t, err)
	other := branches[1]
	_, err = h.eng.Heartbeat(ctx, WorkerCall{RunID: other.RunID, Lease: &other.Lease}, nil, "")
	require.NoError(t, err)
	h.clock.Advance(61 * time.Second)
	n, err := h.eng.Sweep(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the other branch is still within its heartbeat deadline; the run timed out")
	var entry string
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT id FROM dlq WHERE task_run_id = $1`, failed.RunID).Scan(&entry))

	_, err = h.eng.RetryDLQ(ctx, entry)
	require.ErrorIs(t, err, ErrConflict)
	require.Equal(t, "PIPELINE_RUN_TIMED_OUT", err.(*Error).Code)
	run, err := h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineFailed, run.Status)
	require.Equal(t, protocol.PipelineTimeout, run.ErrorCode)
	require.Len(t, run.Tasks, 3, "no retry run was made")
	require.Zero(t, h.count(t, `SELECT count(*) FROM dlq WHERE retried_at IS NOT NULL`))
}

// TestDLQRetryAfterTheDeadlineIsRefused: a run that failed before its deadline can be
// re-opened by a DLQ retry until the deadline; once it has passed, the retry is 409
// PIPELINE_RUN_DEADLINE_PASSED (re-opened, the run would time out at the next sweep) and
// changes nothing.
func TestDLQRetryAfterTheDeadlineIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a", Retries: ptr(0)}},
		protocol.PipelineDefinition{ID: "p", EntryTasks: []string{"a"}, TimeoutMs: ptr(int64(60_000))})
	ctx := context.Background()
	tr, err := h.eng.Trigger(ctx, "p", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	a := h.claimOne(t)
	_, err = h.eng.Callback(ctx, WorkerCall{RunID: a.RunID, Lease: &a.Lease}, &protocol.CallbackRequest{Status: protocol.CallbackFailed,
		Error: "boom", Retryable: ptr(false)})
	require.NoError(t, err)
	var entry string
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT id FROM dlq WHERE task_run_id = $1`, a.RunID).Scan(&entry))
	h.clock.Advance(61 * time.Second)

	_, err = h.eng.RetryDLQ(ctx, entry)
	require.ErrorIs(t, err, ErrConflict)
	require.Equal(t, "PIPELINE_RUN_DEADLINE_PASSED", err.(*Error).Code)
	run, err := h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineFailed, run.Status)
	require.Empty(t, run.ErrorCode, "it failed, it did not time out")
	require.Len(t, run.Tasks, 1, "no retry run was made")
	require.Zero(t, h.count(t, `SELECT count(*) FROM dlq WHERE retried_at IS NOT NULL`))

	// A partial run (partial-merge) past its deadline is refused the same way.
	h.register(t, []protocol.TaskDefinition{{ID: "a", AllowedNext: []string{"b", "c"}, Retries: ptr(0)}, {ID: "b", Retries: ptr(0)}, {ID: "c", Retries: ptr(0)}},
		protocol.PipelineDefinition{ID: "pm", EntryTasks: []string{"a"}, FailureMode: "partial-merge", TimeoutMs: ptr(int64(60_000))})
	pm, err := h.eng.Trigger(ctx, "pm", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	h.succeed(t, h.claimOne(t))
	branches, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, branches, 2)
	_, err = h.eng.Callback(ctx, WorkerCall{RunID: branches[0].RunID, Lease: &branches[0].Lease}, &protocol.CallbackRequest{Status: protocol.CallbackFailed,
		Error: "boom", Retryable: ptr(false)})
	require.NoError(t, err)
	h.succeed(t, branches[1])
	prun, err := h.eng.GetPipelineRun(ctx, pm.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelinePartial, prun.Status)
	var pmEntry string
	require.NoError(t, h.pool.QueryRow(ctx, `SELECT id FROM dlq WHERE task_run_id = $1`, branches[0].RunID).Scan(&pmEntry))
	h.clock.Advance(61 * time.Second)
	_, err = h.eng.RetryDLQ(ctx, pmEntry)
	require.ErrorIs(t, err, ErrConflict)
	require.Equal(t, "PIPELINE_RUN_DEADLINE_PASSED", err.(*Error).Code)
	h.clock.Advance(-61 * time.Second)

	// Before the deadline, the same retry re-opens the run.
	h.clock.Advance(-30 * time.Second)
	_, err = h.eng.RetryDLQ(ctx, entry)
	require.NoError(t, err)
	run, err = h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineRunning, run.Status)
}

// TestSweepTimesOutRunsInBoundedBatches: a sweep times out at most its limit of runs, in
// transactions of deadlineBatch, earliest deadline first; the next sweep takes the rest.
func TestSweepTimesOutRunsInBoundedBatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a"}}, protocol.PipelineDefinition{ID: "p", EntryTasks: []string{"a"}, TimeoutMs: ptr(int64(1_000))})
	ctx := context.Background()
	const runs = 2*deadlineBatch + 7
	for range runs {
		_, err := h.eng.Trigger(ctx, "p", TriggerRequest{Input: json.RawMessage(`{}`)})
		require.NoError(t, err)
	}
	h.clock.Advance(time.Minute)
	n, err := h.eng.Sweep(ctx, runs-3)
	require.NoError(t, err)
	require.Equal(t, runs-3, n, "at most the limit")
	require.Equal(t, 3, h.count(t, `SELECT count(*) FROM pipeline_runs WHERE status = 'running'`))
	n, err = h.eng.Sweep(ctx, runs)
	require.NoError(t, err)
	require.Equal(t, 3, n, "the rest")
	require.Equal(t, runs, h.count(t, `SELECT count(*) FROM pipeline_runs WHERE status = 'failed' AND error_code = 'PIPELINE_TIMEOUT'`))
	require.Equal(t, runs, h.count(t, `SELECT count(*) FROM task_runs WHERE status = 'cancelled' AND error = 'the pipeline run timed out'`))
}
