package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// holdFirstCommit makes the first group commit wait before it commits until release is closed;
// entered is closed once it waits. Later commits run fn, if not nil.
func holdFirstCommit(h *harness, fn func(ctx context.Context, x dbtx)) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	h.eng.beforeCommit = func(ctx context.Context, x dbtx) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
			return
		}
		if fn != nil {
			fn(ctx, x)
		}
	}
	return entered, release
}

// waitQueued waits until n callbacks wait for the next group commit (or gives up after a
// while, for the test's assertions to say what went wrong).
func waitQueued(e *Engine, n int) {
	for deadline := time.Now().Add(10 * time.Second); e.callbacks.queued() < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// answer is what one caller of Callback got.
type answer struct {
	res CallbackResult
	err error
}

// callAll sends the callbacks concurrently while the first group commit is held, releases it
// once all of them queued, and returns their answers and the answer of first, the callback
// that leads the held commit.
func callAll(t *testing.T, h *harness, first Claimed, calls []WorkerCall, cbs []*protocol.CallbackRequest,
	entered, release chan struct{}) (answer, []answer) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	var lead answer
	wg.Go(func() {
		lead.res, lead.err = h.eng.Callback(ctx, WorkerCall{RunID: first.RunID, Lease: &first.Lease},
			&protocol.CallbackRequest{Status: protocol.CallbackSuccess})
	})
	<-entered
	out := make([]answer, len(calls))
	for i := range calls {
		wg.Go(func() { out[i].res, out[i].err = h.eng.Callback(ctx, calls[i], cbs[i]) })
	}
	waitQueued(h.eng, len(calls))
	close(release)
	wg.Wait()
	require.NoError(t, lead.err)
	require.True(t, lead.res.Applied)
	return lead, out
}

func call(c Claimed) WorkerCall { return WorkerCall{RunID: c.RunID, Lease: &c.Lease} }

func success() *protocol.CallbackRequest {
	return &protocol.CallbackRequest{Status: protocol.CallbackSuccess}
}

// TestGroupCommitBatchesConcurrentCallbacks: callbacks that arrive while a commit is in flight
// are applied together in the next one, and each caller gets its own answer.
func TestGroupCommitBatchesConcurrentCallbacks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{InlineMax: 1024})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	const n = 40
	h.enqueue(t, "t", 0, n+1)
	claimed, err := h.eng.Claim(context.Background(), n+1)
	require.NoError(t, err)
	require.Len(t, claimed, n+1)
	entered, release := holdFirstCommit(h, nil)
	calls := make([]WorkerCall, n)
	cbs := make([]*protocol.CallbackRequest, n)
	for i, c := range claimed[1:] {
		calls[i] = call(c)
		cbs[i] = &protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(c.RunID), OutputSize: int64(i + 1),
			LogsPath: "runs/" + c.RunID + "/logs.txt", Assets: map[string]protocol.Asset{"a": {Path: "runs/" + c.RunID + "/a.bin", Size: 3}}}
		if i%2 == 0 {
			// Every other one sends its output inline.
			cbs[i].Output, cbs[i].OutputSize = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), 0
		}
	}
	before := h.eng.callbackTxs.Load()
	_, answers := callAll(t, h, claimed[0], calls, cbs, entered, release)
	for i, a := range answers {
		require.NoError(t, a.err, i)
		require.True(t, a.res.Applied, i)
		require.Equal(t, protocol.StatusCompleted, a.res.Status, i)
		require.Equal(t, "t", a.res.taskID, i)
	}
	require.Equal(t, int64(2), h.eng.callbackTxs.Load()-before, "the first callback alone, then the %d that queued behind it", n)
	for i, c := range claimed[1:] {
		var path, logs string
		var size int64
		var asset string
		var output []byte
		require.NoError(t, h.pool.QueryRow(context.Background(), `SELECT output_path, output_size, logs_path, assets->'a'->>'path', output
			FROM task_runs WHERE id = $1 AND status = 'completed' AND deadline IS NULL AND completed_at IS NOT NULL`, c.RunID).
			Scan(&path, &size, &logs, &asset, &output))
		want := []any{protocol.OutputPath(c.RunID), int64(i + 1), "runs/" + c.RunID + "/logs.txt", "runs/" + c.RunID + "/a.bin", []byte(nil)}
		if i%2 == 0 {
			inline := fmt.Appendf(nil, `{"i":%d}`, i)
			want[1], want[4] = int64(len(inline)), inline
		}
		require.Equal(t, want, []any{path, size, logs, asset, output})
	}
}

// TestGroupCommitAnswersEachCallback: one batch holding a valid callback, a stale lease, an
// unknown run, a duplicate of an applied callback, a failure, two callbacks of one run and
// callbacks whose statements fail answers each as if it had come alone.
func TestGroupCommitAnswersEachCallback(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(3)}})
	h.enqueue(t, "t", 0, 9)
	claimed, err := h.eng.Claim(context.Background(), 9)
	require.NoError(t, err)
	require.Len(t, claimed, 9)
	first, ok, stale, dup, failed, twice, badAsset, badError, okAfter := claimed[0], claimed[1], claimed[2], claimed[3], claimed[4],
		claimed[5], claimed[6], claimed[7], claimed[8]
	h.succeed(t, dup)
	entered, release := holdFirstCommit(h, nil)
	calls := []WorkerCall{call(ok), {RunID: stale.RunID, Lease: ptr(stale.Lease + 1)}, {RunID: "trun_unknown"}, call(dup),
		call(failed), call(twice), call(twice), call(badAsset), call(badError), call(okAfter)}
	cbs := []*protocol.CallbackRequest{success(), success(), success(), success(),
		{Status: protocol.CallbackFailed, Error: "boom"}, success(), success(),
		// PostgreSQL refuses a NUL character in text and JSON: these statements fail.
		{Status: protocol.CallbackSuccess, Assets: map[string]protocol.Asset{"a\x00": {Path: "runs/" + badAsset.RunID + "/a"}}},
		{Status: protocol.CallbackFailed, Error: "bad\x00error"}, success()}
	_, a := callAll(t, h, first, calls, cbs, entered, release)

	require.NoError(t, a[0].err)
	require.Equal(t, CallbackResult{Applied: true, Status: protocol.StatusCompleted}, stripped(a[0].res))
	require.ErrorIs(t, a[1].err, ErrConflict)
	require.Equal(t, "dispatching", h.run(t, stale.RunID).Status)
	require.ErrorIs(t, a[2].err, ErrNotFound)
	require.NoError(t, a[3].err)
	require.Equal(t, CallbackResult{Applied: false, Status: protocol.StatusCompleted}, stripped(a[3].res))
	require.NoError(t, a[4].err)
	require.Equal(t, CallbackResult{Applied: true, Status: protocol.StatusPending}, stripped(a[4].res))
	require.Equal(t, 2, h.run(t, failed.RunID).Attempt)
	require.NoError(t, a[5].err)
	require.NoError(t, a[6].err)
	require.True(t, a[5].res.Applied != a[6].res.Applied, "one of the two callbacks of one run applied")
	require.Equal(t, protocol.StatusCompleted, a[5].res.Status)
	require.Equal(t, protocol.StatusCompleted, a[6].res.Status)
	require.Error(t, a[7].err)
	require.Equal(t, "dispatching", h.run(t, badAsset.RunID).Status)
	require.Error(t, a[8].err)
	require.Equal(t, "dispatching", h.run(t, badError.RunID).Status)
	require.NoError(t, a[9].err)
	require.Equal(t, CallbackResult{Applied: true, Status: protocol.StatusCompleted}, stripped(a[9].res))
	require.Equal(t, 1, h.count(t, `SELECT jsonb_array_length(previous_attempts) FROM task_runs WHERE id = $1`, failed.RunID))
}

// stripped is res without what it keeps for the metrics.
func stripped(res CallbackResult) CallbackResult {
	return CallbackResult{Applied: res.Applied, Status: res.Status}
}

// TestGroupCommitJoinInOneBatch: the two predecessors of a join calling back in one batch
// enable it exactly once, and the pipeline run completes.
func TestGroupCommitJoinInOneBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a", AllowedNext: []string{"b", "c"}}, {ID: "b", AllowedNext: []string{"d"}},
		{ID: "c", AllowedNext: []string{"d"}}, {ID: "d"}, {ID: "solo"}}, protocol.PipelineDefinition{ID: "diamond", EntryTasks: []string{"a"}})
	ctx := context.Background()
	tr, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	h.succeed(t, h.claimOne(t))
	branches, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, branches, 2)
	h.enqueue(t, "solo", 0, 1)
	solo := h.claimOne(t)
	entered, release := holdFirstCommit(h, nil)
	_, a := callAll(t, h, solo, []WorkerCall{call(branches[0]), call(branches[1])}, []*protocol.CallbackRequest{success(), success()},
		entered, release)
	for i := range a {
		require.NoError(t, a[i].err)
		require.True(t, a[i].res.Applied)
	}
	join, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, join, 1, "d was enabled once")
	require.Equal(t, "d", join[0].TaskID)
	h.succeed(t, join[0])
	run, err := h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineCompleted, run.Status)
}

// TestGroupCommitCrashBeforeCommit: when the connection of a batch dies before its commit
// (as when the orchestrator or its database connection goes away), every caller of the batch
// is answered with an error, never success, and nothing of it is applied; the worker's
// callback sent again then applies.
func TestGroupCommitCrashBeforeCommit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t", Retries: ptr(3)}})
	h.enqueue(t, "t", 0, 4)
	claimed, err := h.eng.Claim(context.Background(), 4)
	require.NoError(t, err)
	require.Len(t, claimed, 4)
	var kill atomic.Bool
	var killErrs []error
	var mu sync.Mutex
	entered, release := holdFirstCommit(h, func(ctx context.Context, x dbtx) {
		if kill.Load() {
			err := killBackend(ctx, h, x)
			mu.Lock()
			killErrs = append(killErrs, err)
			mu.Unlock()
		}
	})
	first, rest := claimed[0], claimed[1:]
	calls := []WorkerCall{call(rest[0]), call(rest[1]), call(rest[2])}
	cbs := []*protocol.CallbackRequest{success(), success(), {Status: protocol.CallbackFailed, Error: "boom"}}
	kill.Store(true)
	_, a := callAll(t, h, first, calls, cbs, entered, release)
	kill.Store(false)
	mu.Lock()
	require.Len(t, killErrs, 2, "the plain successes' statement and the failure's transaction")
	for _, err := range killErrs {
		require.NoError(t, err)
	}
	mu.Unlock()
	for i, c := range rest {
		require.Error(t, a[i].err, i)
		require.False(t, a[i].res.Applied, i)
		r := h.run(t, c.RunID)
		require.Equal(t, "dispatching", r.Status, i)
		require.Equal(t, 1, r.Attempt, i)
	}
	for i, c := range rest {
		res, err := h.eng.Callback(context.Background(), calls[i], cbs[i])
		require.NoError(t, err, i)
		require.True(t, res.Applied, i)
		require.Equal(t, []string{"completed", "completed", "pending"}[i], h.run(t, c.RunID).Status, i)
	}
}

// killBackend terminates the server process of x's connection and waits until it is gone.
func killBackend(ctx context.Context, h *harness, x dbtx) error {
	var pid int
	if err := x.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		return err
	}
	if _, err := h.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var n int
		if err := h.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
	return errors.New("the backend did not end")
}

// TestGroupCommitCallerGone: a callback whose caller went away before its batch was taken is
// answered with the context's error and not applied.
func TestGroupCommitCallerGone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "t"}})
	h.enqueue(t, "t", 0, 2)
	claimed, err := h.eng.Claim(context.Background(), 2)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	entered, release := holdFirstCommit(h, nil)
	var wg sync.WaitGroup
	var lead answer
	wg.Go(func() { lead.res, lead.err = h.eng.Callback(context.Background(), call(claimed[0]), success()) })
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	var gone answer
	done := make(chan struct{})
	go func() {
		defer close(done)
		gone.res, gone.err = h.eng.Callback(ctx, call(claimed[1]), success())
	}()
	waitQueued(h.eng, 1)
	cancel()
	<-done
	close(release)
	wg.Wait()
	require.NoError(t, lead.err)
	require.ErrorIs(t, gone.err, context.Canceled)
	require.Equal(t, "dispatching", h.run(t, claimed[1].RunID).Status)
	require.Zero(t, h.eng.callbacks.queued())
}

// TestPipelineCallbackHints: a callback for a pipeline's run that this engine claimed goes
// straight to the pipeline transaction (one transaction); one that reaches another instance,
// which has no hint, finds its pipeline run first (two), and both advance the run alike.
// Readied tells the caller when the callback made a successor pending.
func TestPipelineCallbackHints(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.register(t, []protocol.TaskDefinition{{ID: "a", AllowedNext: []string{"b", "c"}}, {ID: "b", AllowedNext: []string{"d"}},
		{ID: "c", AllowedNext: []string{"d"}}, {ID: "d"}}, protocol.PipelineDefinition{ID: "diamond", EntryTasks: []string{"a"}})
	other, err := New(h.pool, h.eng.keys, h.eng.storage, Config{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(other.Close)
	ctx := context.Background()
	tr, err := h.eng.Trigger(ctx, "diamond", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)

	// callback reports c's success through eng and checks the transactions it took.
	callback := func(eng *Engine, c Claimed, txs int64, readied bool) {
		t.Helper()
		before := eng.callbackTxs.Load()
		res, err := eng.Callback(ctx, call(c), success())
		require.NoError(t, err)
		require.True(t, res.Applied)
		require.Equal(t, readied, res.Readied, "Readied of %s's callback", c.TaskID)
		require.Equal(t, txs, eng.callbackTxs.Load()-before, "transactions of %s's callback", c.TaskID)
	}
	a := h.claimOne(t)
	require.Nil(t, a.Upstream, "an entry task has no upstream outputs")
	callback(other, a, 2, true) // no hint on the other instance
	branches, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, branches, 2)
	require.Equal(t, []string{"a"}, slices.Collect(maps.Keys(branches[0].Upstream)), "the claim carries the upstream outputs")
	callback(h.eng, branches[0], 1, false) // d waits for the other branch
	callback(h.eng, branches[1], 1, true)
	d := h.claimOne(t)
	require.Equal(t, "d", d.TaskID)
	callback(h.eng, d, 1, false)
	run, err := h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineCompleted, run.Status)

	// A duplicate of an applied callback, hint or not, changes nothing.
	res, err := h.eng.Callback(ctx, call(d), success())
	require.NoError(t, err)
	require.False(t, res.Applied)
	require.False(t, res.Readied)
}

// TestGroupCommitMapItemsInOneBatch: the callbacks of a map's items in one batch complete in
// one statement and count the map row down once, each answered on its own (a stale lease, a
// callback sent twice, one of an item already completed); the map completes when the last
// items call back and enables its successor once.
func TestGroupCommitMapItemsInOneBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{InlineMax: 1 << 10})
	h.register(t, []protocol.TaskDefinition{{ID: "split", AllowedNext: []string{"item"}}, {ID: "item", AllowedNext: []string{"join"}},
		{ID: "join"}, {ID: "solo"}}, protocol.PipelineDefinition{ID: "fan", EntryTasks: []string{"split"},
		Nodes: map[string]protocol.NodeConfig{"item": {Map: &protocol.MapConfig{Over: "split", Items: "/items"}}}})
	ctx := context.Background()
	tr, err := h.eng.Trigger(ctx, "fan", TriggerRequest{Input: json.RawMessage(`{}`)})
	require.NoError(t, err)
	split := h.claimOne(t)
	res, err := h.eng.Callback(ctx, call(split), &protocol.CallbackRequest{Status: protocol.CallbackSuccess,
		OutputPath: protocol.OutputPath(split.RunID), Output: json.RawMessage(`{"items":[0,1,2,3,4,5]}`)})
	require.NoError(t, err)
	require.True(t, res.Applied)
	items, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, items, 6)
	ok0, stale, dup, twice, ok4, later := items[0], items[1], items[2], items[3], items[4], items[5]
	h.succeed(t, dup)
	h.enqueue(t, "solo", 0, 1)
	solo := h.claimOne(t)
	entered, release := holdFirstCommit(h, nil)
	calls := []WorkerCall{call(ok0), {RunID: stale.RunID, Lease: ptr(stale.Lease + 1)}, call(dup), call(twice), call(twice), call(ok4)}
	cbs := []*protocol.CallbackRequest{success(), success(), success(), success(), success(), success()}
	_, a := callAll(t, h, solo, calls, cbs, entered, release)

	require.NoError(t, a[0].err)
	require.Equal(t, CallbackResult{Applied: true, Status: protocol.StatusCompleted}, stripped(a[0].res))
	require.ErrorIs(t, a[1].err, ErrConflict)
	require.Equal(t, "dispatching", h.run(t, stale.RunID).Status)
	require.NoError(t, a[2].err)
	require.Equal(t, CallbackResult{Applied: false, Status: protocol.StatusCompleted}, stripped(a[2].res))
	require.NoError(t, a[3].err)
	require.NoError(t, a[4].err)
	require.True(t, a[3].res.Applied != a[4].res.Applied, "one of the two callbacks of one item applied")
	require.NoError(t, a[5].err)
	require.True(t, a[5].res.Applied)
	left := `SELECT items_left FROM task_runs WHERE pipeline_run_id = $1 AND task_id = 'item' AND item_index IS NULL`
	require.Equal(t, 2, h.count(t, left, tr.PipelineRunID), "4 of 6 items completed, each counted once")

	h.succeed(t, stale)
	h.succeed(t, later)
	require.Equal(t, 0, h.count(t, left, tr.PipelineRunID))
	join, err := h.eng.Claim(ctx, 10)
	require.NoError(t, err)
	require.Len(t, join, 1, "join was enabled once")
	require.Equal(t, "join", join[0].TaskID)
	h.succeed(t, join[0])
	run, err := h.eng.GetPipelineRun(ctx, tr.PipelineRunID)
	require.NoError(t, err)
	require.Equal(t, protocol.PipelineCompleted, run.Status)
}
