package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
)

// storedRunInputs lists the run ids whose input is a file of the local backend
// (standalone/<runId>/input.json: where spawned runs and map items spawned by an item keep an
// input too large to be inline), and how many of them no task run refers to.
func (e *env) storedRunInputs() (ids []string, orphans int) {
	e.t.Helper()
	dir := filepath.Join(e.storageDir, "standalone")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0
	}
	require.NoError(e.t, err)
	for _, d := range entries {
		if _, err := os.Stat(filepath.Join(dir, d.Name(), "input.json")); err == nil {
			ids = append(ids, d.Name())
		}
	}
	known := e.count(`SELECT count(*) FROM task_runs WHERE id = ANY($1)`, ids)
	return ids, len(ids) - known
}

// bigEntries are entries of tasks (in turn) whose input is larger than size bytes.
func bigEntries(size int, tasks ...string) []protocol.SpawnRequest {
	out := make([]protocol.SpawnRequest, len(tasks))
	for i, t := range tasks {
		out[i] = protocol.SpawnRequest{TaskID: t, Input: json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("x", size)))}
	}
	return out
}

// A spawn of a task the service removed (re-registered without it while the spawning node
// runs) is refused with 400 SPAWN_TASK_UNKNOWN naming the entry, and writes nothing: the node
// still runs and its corrected callback applies. A paused task's spawned runs are created and
// wait (pending, never dispatched) until it is resumed; then the run completes.
func TestSpawnRemovedAndPausedTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", nil)
	removed := make(chan struct{})
	var refusal atomic.Value
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		<-removed
		rows := e.count(`SELECT count(*) FROM task_runs`)
		cb := e.result(d, `{"planned":2}`)
		cb.Spawn = []protocol.SpawnRequest{{TaskID: "a", Input: json.RawMessage(`{"n":0}`)}, {TaskID: "b", Input: json.RawMessage(`{"n":1}`)}}
		status, body := w.callback(d, cb)
		refusal.Store(response{status, body})
		if n := e.count(`SELECT count(*) FROM task_runs`); n != rows {
			t.Errorf("the refused spawn wrote %d rows", n-rows)
		}
		if st := e.count(`SELECT count(*) FROM task_runs WHERE id = $1 AND status = 'running'`, d.RunID); st != 1 {
			t.Errorf("plan's run no longer runs after the refused spawn")
		}
		cb.Spawn = []protocol.SpawnRequest{{TaskID: "a", Input: json.RawMessage(`{"n":0}`)}, {TaskID: "a", Input: json.RawMessage(`{"n":1}`)}}
		return cb
	})
	w.on("a", spawnedAnswer(e, nil))
	id := e.trigger("fan", map[string]any{"input": 1})
	w.waitDispatches(1)
	// Version 2 of the service no longer has b; a is paused.
	e.register("svc", "2", w.URL(), task("plan", next("join")), task("join"), task("a"))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM tasks WHERE id = 'b' AND removed_in_version = '2'`))
	r := e.do("POST", "/api/tasks/a/pause", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	close(removed)

	w.waitUntil("plan's callback answered", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["plan"]) == 1
	})
	got := refusal.Load().(response)
	require.Equal(t, http.StatusBadRequest, got.Status, string(got.Body))
	eb := got.errorBody(t)
	require.Equal(t, "SPAWN_TASK_UNKNOWN", eb.Code)
	require.Contains(t, eb.Error, `spawn[1].taskId "b"`)
	require.Equal(t, map[string]any{"field": "spawn[1].taskId"}, eb.Details)
	w.mu.Lock()
	require.Equal(t, []int{http.StatusOK}, w.statuses["plan"], "the corrected callback applies")
	w.mu.Unlock()

	// The paused task's spawned runs exist and wait.
	_, status, _, total, left := e.spawnRow(id)
	require.Equal(t, "waiting", status)
	require.Equal(t, 2, *total)
	require.Equal(t, 2, *left)
	require.Equal(t, 2, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND spawned_by IS NOT NULL
		AND task_id = 'a' AND status = 'pending'`, id))
	require.Zero(t, e.process().Claimed, "a paused task's spawned runs are not claimed")
	require.Empty(t, w.dispatchesOf("a"), "a paused task's spawned runs are not dispatched")
	require.Equal(t, "running", e.pipelineRun(id).Status)

	r = e.do("POST", "/api/tasks/a/resume", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	e.waitRun(id, "completed")
	require.Len(t, w.dispatchesOf("a"), 2)
	join := w.dispatchesOf("join")
	require.Len(t, join, 1)
	own, items := e.spawnDoc(join[0])
	require.JSONEq(t, `{"planned":2}`, string(own))
	require.Len(t, items, 2)
	for i, v := range items {
		require.JSONEq(t, fmt.Sprintf(`{"a":%d}`, i), string(v))
	}
}

// A spawning callback and the cancel of its pipeline run, sent at once from two goroutines, 20
// rounds, the cancel delayed by 0 to 40 ms so that either may win: the cancel is answered 200
// and the run ends cancelled with nothing left to start (no row pending, waiting, dispatching
// or running); the callback is answered 200 (applied: its 10 runs inserted, then cancelled or
// completed; not applied: none inserted, the node cancelled), never 500; no input stored for
// the callback is left without its run (before the fix, the inputs of a callback the cancel
// beat stayed in storage).
func TestSpawnCancelRace(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, func(t *testing.T, inline func(*core.Config)) {
		e := newEnv(t, inline)
		w := newPWorker(t, e)
		spawnPipeline(e, w, "fan", nil)
		plans := make(chan protocol.DispatchRequest, 1)
		answer := w.after
		w.after = func(d protocol.DispatchRequest) {
			if d.TaskID == "plan" {
				plans <- d // the test sends plan's callback itself
				return
			}
			answer(d)
		}
		w.on("a", spawnedAnswer(e, nil))
		w.on("b", spawnedAnswer(e, nil))
		release := w.holdTask("join")
		defer release()
		const n = 10
		outcomes := map[bool]int{}
		for round := range rounds(20) {
			id := e.trigger("fan", map[string]any{"input": round})
			d := recv(t, plans, fmt.Sprintf("round %d: plan's dispatch", round))
			cb := e.result(d, `{}`)
			cb.Spawn = spawnEntries(n)
			// Rounds 0 and 1 are ordered (the cancel done before the callback is sent, then the
			// callback answered before the cancel is sent), so that both outcomes are checked
			// whatever this machine's timing; the others race.
			start, cbDone, cancelDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
			var wg sync.WaitGroup
			var cbStatus int
			var cbBody []byte
			var cancel response
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer close(cbDone)
				<-start
				if round == 0 {
					<-cancelDone
				}
				cbStatus, cbBody = w.callback(d, cb)
			}()
			go func() {
				defer wg.Done()
				defer close(cancelDone)
				<-start
				if round == 1 {
					<-cbDone
				}
				// Up to 40 ms later in some rounds, so that the callback (which stores its
				// inputs first when they are not inline) wins some rounds too.
				time.Sleep(time.Duration(round%5) * time.Duration(round%5) * 2500 * time.Microsecond)
				cancel = e.do("POST", "/api/runs/"+id+"/cancel", nil, "")
			}()
			close(start)
			wg.Wait()
			require.Equal(t, http.StatusOK, cancel.Status, "round %d: cancel: %s", round, cancel.Body)
			require.Equal(t, http.StatusOK, cbStatus, "round %d: callback: %s", round, cbBody)
			var ans struct {
				Applied bool   `json:"applied"`
				Status  string `json:"status"`
			}
			require.NoError(t, json.Unmarshal(cbBody, &ans))
			e.waitRun(id, "cancelled")
			spawned := e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND spawned_by IS NOT NULL`, id)
			require.Zero(t, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1
				AND status IN ('pending', 'waiting', 'dispatching', 'running')`, id), "round %d: nothing is left to start", round)
			_, status, _, total, _ := e.spawnRow(id)
			if ans.Applied {
				// Its spawned runs may all have completed before the cancel, then plan too
				// (join is held, so the run cannot end before the cancel).
				require.Contains(t, []string{"cancelled", "completed"}, status, "round %d", round)
				require.Equal(t, "waiting", ans.Status, "round %d", round)
				require.Equal(t, n, spawned, "round %d", round)
				require.Equal(t, n, *total, "round %d", round)
			} else {
				require.Equal(t, "cancelled", status, "round %d", round)
				require.Equal(t, "cancelled", ans.Status, "round %d", round)
				require.Zero(t, spawned, "round %d", round)
				require.Nil(t, total, "round %d", round)
			}
			outcomes[ans.Applied]++
			_, orphans := e.storedRunInputs()
			require.Zero(t, orphans, "round %d: a stored input without its run", round)
			// Sent again, the callback changes nothing.
			st, body := w.callback(d, cb)
			require.Equal(t, http.StatusOK, st, string(body))
			require.Contains(t, string(body), `"applied":false`)
			require.Equal(t, spawned, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND spawned_by IS NOT NULL`, id))
			_, orphans = e.storedRunInputs()
			require.Zero(t, orphans, "round %d: the callback sent again left a stored input", round)
		}
		t.Logf("callback applied first in %d rounds, cancel first in %d", outcomes[true], outcomes[false])
		require.Positive(t, outcomes[true], "the round with the callback first applied it")
		require.Positive(t, outcomes[false], "the round with the cancel first refused the spawn")
		release()
		// Late callbacks of the runs the cancel caught dispatched (spawned runs, join) change
		// nothing; the test waits for them (they must not outlive its servers).
		w.waitUntil("the runs dispatched called back", func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(w.statuses["a"])+len(w.statuses["b"])+len(w.statuses["join"]) ==
				len(w.dispatchesOf("a"))+len(w.dispatchesOf("b"))+len(w.dispatchesOf("join"))
		})
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, task := range []string{"a", "b", "join"} {
			for _, st := range w.statuses[task] {
				require.Contains(t, []int{http.StatusOK, http.StatusConflict}, st)
			}
		}
	})
}

// Spawn entries whose inputs are too large to be inline, in callbacks refused for another
// entry (too many, an unknown task after valid ones, another service's task) or for a stale
// run (sent again after it applied), leave nothing in storage or in the database; the
// callback that applies stores each input once, where its run reads it. TestSpawnBadInput
// covers the refusals with small inputs only.
func TestSpawnRefusedStoresNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.InlinePayloadMaxBytes = 64 })
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", map[string]any{"maxItems": 3})
	e.register("other", "1", w.URL(), task("foreign"))
	var codes atomic.Value
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		var got []string
		for _, entries := range [][]protocol.SpawnRequest{
			bigEntries(200, "a", "b", "a", "b"),
			bigEntries(200, "a", "b", "ghost"),
			bigEntries(200, "a", "foreign"),
		} {
			rows := e.count(`SELECT count(*) FROM task_runs`)
			cb := e.result(d, `{}`)
			cb.Spawn = entries
			status, body := w.callback(d, cb)
			var eb protocol.ErrorBody
			_ = json.Unmarshal(body, &eb)
			got = append(got, fmt.Sprintf("%d %s", status, eb.Code))
			if n := e.count(`SELECT count(*) FROM task_runs`); n != rows {
				t.Errorf("a refused spawn wrote %d rows", n-rows)
			}
			if stored, _ := e.storedRunInputs(); len(stored) > 0 {
				t.Errorf("a refused spawn stored %d inputs", len(stored))
			}
		}
		codes.Store(got)
		cb := e.result(d, `{}`)
		cb.Spawn = bigEntries(200, "a", "b", "a")
		return cb
	})
	w.on("a", spawnedAnswer(e, nil))
	w.on("b", spawnedAnswer(e, nil))
	id := e.trigger("fan", map[string]any{"input": 1})
	e.waitRun(id, "completed")
	require.Equal(t, []string{"400 SPAWN_TOO_MANY", "400 SPAWN_TASK_UNKNOWN", "400 SPAWN_TASK_UNKNOWN"}, codes.Load())
	stored, orphans := e.storedRunInputs()
	require.Len(t, stored, 3, "the applied spawn's inputs are stored")
	require.Zero(t, orphans)
	spawned := append(w.dispatchesOf("a"), w.dispatchesOf("b")...)
	require.Len(t, spawned, 3)
	for _, d := range spawned {
		require.Equal(t, protocol.StandaloneInputPath(d.RunID), d.InputPath)
		require.True(t, e.inStorage(d.InputPath))
	}
	// plan's callback sent again after its run ended (applied: false) stores nothing either.
	plan := w.dispatchesOf("plan")[0]
	again := e.result(plan, `{}`)
	again.Spawn = bigEntries(200, "a", "b", "a")
	status, body := w.callback(plan, again)
	require.Equal(t, http.StatusOK, status, string(body))
	stored, orphans = e.storedRunInputs()
	require.Len(t, stored, 3)
	require.Zero(t, orphans)
}

// A spawn in a pipeline paused while its node runs: the spawned runs are inserted and parked
// (none dispatched, those past maxConcurrency still held after the resume); the resume lets
// them run under the bound, and the run completes with every output.
func TestSpawnInPausedPipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	f := &spawnedInFlight{now: map[string]int{}, most: map[string]int{}, gaveUp: map[string]bool{}, reach: 2}
	f.wrap(w)
	spawnPipeline(e, w, "fan", map[string]any{"maxConcurrency": 2})
	const n = 6
	paused := make(chan struct{})
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		<-paused
		cb := e.result(d, `{}`)
		cb.Spawn = spawnEntries(n)
		return cb
	})
	w.on("a", spawnedAnswer(e, nil))
	w.on("b", spawnedAnswer(e, nil))
	id := e.trigger("fan", map[string]any{"input": 1})
	w.waitDispatches(1)
	r := e.do("POST", "/api/pipelines/fan/pause", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	close(paused)
	w.waitUntil("plan's callback answered", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["plan"]) == 1
	})
	w.mu.Lock()
	require.Equal(t, []int{http.StatusOK}, w.statuses["plan"])
	w.mu.Unlock()
	require.Equal(t, n, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND spawned_by IS NOT NULL
		AND status = 'pending' AND available_at > now() + interval '1 year'`, id), "every spawned run is parked")
	require.Zero(t, e.process().Claimed, "nothing spawned is claimed while the pipeline is paused")
	require.Len(t, w.all(), 1, "nothing spawned is dispatched while the pipeline is paused")

	require.Equal(t, n-2, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND spawned_by IS NOT NULL
		AND parked_available_at = '9999-12-31 00:00:00+00'`, id), "the parking keeps the runs past maxConcurrency held")

	r = e.do("POST", "/api/pipelines/fan/resume", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	e.waitRun(id, "completed")
	f.mu.Lock()
	require.LessOrEqual(t, f.most[id], 2, "at most maxConcurrency spawned runs in flight")
	f.mu.Unlock()
	join := w.dispatchesOf("join")
	require.Len(t, join, 1)
	_, items := e.spawnDoc(join[0])
	require.Len(t, items, n)
}

// A spawning callback of an attempt that is no longer the run's (its first, failed and retried)
// is answered 409 and leaves none of the inputs it carried in storage (they were stored before
// the transaction found the lease stale, and stayed there before the fix); the current attempt's
// spawn applies.
func TestSpawnStaleLeaseStoresNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.InlinePayloadMaxBytes = 64 })
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", nil, withRetries(1, 0))
	var stale atomic.Value
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		if d.Attempt == 1 {
			return failWith("first attempt", true)(d)
		}
		first := w.dispatchesOf("plan")[0]
		cb := e.result(first, `{}`)
		cb.Spawn = bigEntries(200, "a", "b")
		status, _ := w.callback(first, cb)
		stored, _ := e.storedRunInputs()
		stale.Store(fmt.Sprintf("%d %d", status, len(stored)))
		cb = e.result(d, `{}`)
		cb.Spawn = bigEntries(200, "a", "b")
		return cb
	})
	w.on("a", spawnedAnswer(e, nil))
	w.on("b", spawnedAnswer(e, nil))
	id := e.trigger("fan", map[string]any{"input": 1})
	e.waitRun(id, "completed")
	require.Equal(t, "409 0", stale.Load(), "the stale callback: its answer and the inputs left in storage")
	stored, orphans := e.storedRunInputs()
	require.Len(t, stored, 2)
	require.Zero(t, orphans)
	require.Len(t, append(w.dispatchesOf("a"), w.dispatchesOf("b")...), 2)
}

// A failed callback of a spawn node's run that carries spawn entries spawns nothing and stores
// nothing: the entries are dropped (docs/api.md, Spawn nodes: "on a failed callback spawn is
// ignored"), whether the failure is retryable (the run is retried as after any failed attempt)
// or not (the node fails and its run follows its failure mode). The entries' inputs are too
// large to be inline, so checking them as a success's are checked would store them.
func TestSpawnFailedCallbackSpawnsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.InlinePayloadMaxBytes = 64 })
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", nil, withRetries(1, 0))
	var mu sync.Mutex
	answers := map[int]string{} // by attempt: the callback's answer, rows spawned, inputs stored
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := failWith(fmt.Sprintf("attempt %d failed", d.Attempt), d.Attempt == 1)(d)
		cb.Spawn = bigEntries(200, "a", "b", "a")
		status, body := w.callback(d, cb)
		var ans struct {
			Applied bool   `json:"applied"`
			Status  string `json:"status"`
		}
		_ = json.Unmarshal(body, &ans)
		stored, _ := e.storedRunInputs()
		got := fmt.Sprintf("%d applied=%t %s, %d spawned, %d stored", status, ans.Applied, ans.Status,
			e.count(`SELECT count(*) FROM task_runs WHERE spawned_by = $1`, d.RunID), len(stored))
		mu.Lock()
		answers[d.Attempt] = got
		mu.Unlock()
		return cb // sent again by the harness: a repeat of an ended attempt, which changes nothing
	})
	id := e.trigger("fan", map[string]any{"input": 1})
	r := e.waitRun(id, "failed")
	w.waitUntil("both attempts' handlers done", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["plan"]) == 2
	})
	mu.Lock()
	require.Equal(t, map[int]string{
		1: "200 applied=true pending, 0 spawned, 0 stored",
		2: "200 applied=true failed, 0 spawned, 0 stored",
	}, answers, "the retryable failure retried the run, the other failed it; neither spawned or stored anything")
	mu.Unlock()
	require.Len(t, w.dispatchesOf("plan"), 2)
	require.Empty(t, append(w.dispatchesOf("a"), w.dispatchesOf("b")...))

	_, status, code, total, left := e.spawnRow(id)
	require.Equal(t, "failed", status)
	require.Equal(t, "BOOM", code)
	require.Nil(t, total, "the node never waited for spawned runs")
	require.Nil(t, left)
	require.Equal(t, "attempt 2 failed", *r.node("plan").Error)
	require.Equal(t, "cancelled", r.node("join").Status)
	require.Zero(t, e.count(`SELECT count(*) FROM task_runs WHERE spawned_by IS NOT NULL OR item_index IS NOT NULL`))
	require.Equal(t, map[string]string{"plan": "failed", "join": "cancelled"}, r.states())
	stored, orphans := e.storedRunInputs()
	require.Empty(t, stored, "no spawn input stored")
	require.Zero(t, orphans)
	require.Zero(t, e.process().Claimed, "nothing left to run")
}

// A spawned run's concurrency key is read from its input whether the input stays inline or is
// stored, as an enqueued run's is: a stored input's run is held to its key's limit too.
func TestSpawnedRunsGetTheirConcurrencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.InlinePayloadMaxBytes = 64 })
	w := newPWorker(t, e)
	keyed := func(td *protocol.TaskDefinition) { td.ConcurrencyKey, td.ConcurrencyPerKey = "/k", ptr(1) }
	spawnPipeline(e, w, "fan", nil, keyed)
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := e.result(d, `{}`)
		cb.Spawn = []protocol.SpawnRequest{
			{TaskID: "a", Input: json.RawMessage(`{"k":"small"}`)},
			{TaskID: "b", Input: json.RawMessage(fmt.Sprintf(`{"k":"big","pad":%q}`, strings.Repeat("x", 200)))},
			{TaskID: "a", Input: json.RawMessage(fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 200)))},
		}
		return cb
	})
	w.on("a", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, `{}`) })
	w.on("b", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, `{}`) })
	id := e.trigger("fan", map[string]any{"input": 1})
	e.waitRun(id, "completed")
	rows, err := e.pool.Query(context.Background(),
		`SELECT coalesce(concurrency_key, '<none>'), input IS NOT NULL FROM task_runs WHERE spawned_by IS NOT NULL ORDER BY item_index`)
	require.NoError(t, err)
	type keyRow struct {
		Key    string
		Inline bool
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[keyRow])
	require.NoError(t, err)
	require.Equal(t, []keyRow{{`"small"`, true}, {`"big"`, false}, {"", false}}, got, "no value at the pointer: the empty key, limited by the task alone")
}
