package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
)

// spawnPipeline registers plan → join (service "svc", with tasks a and b that no pipeline
// reaches) and declares plan a spawn node of pipeline id with extra as its spawn config.
func spawnPipeline(e *env, w *pworker, id string, extra map[string]any, mods ...func(*protocol.TaskDefinition)) {
	if extra == nil {
		extra = map[string]any{}
	}
	e.register("svc", "1", w.URL(), task("plan", append(mods, next("join"))...), task("join", mods...), task("a", mods...), task("b", mods...))
	r := e.do("PUT", "/api/pipelines/"+id, map[string]any{"entryTasks": []string{"plan"},
		"nodes": map[string]any{"plan": map[string]any{"spawn": extra}}}, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
}

// spawnEntries are n entries alternating tasks a and b, input {"n": i}.
func spawnEntries(n int) []protocol.SpawnRequest {
	out := make([]protocol.SpawnRequest, n)
	for i := range out {
		task := "a"
		if i%2 == 1 {
			task = "b"
		}
		out[i] = protocol.SpawnRequest{TaskID: task, Input: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return out
}

// spawnedAnswer answers a spawned run of task a or b with {"<task>": n}; fail names the n that
// fail for good.
func spawnedAnswer(e *env, fail func(n int) bool) func(protocol.DispatchRequest) protocol.CallbackRequest {
	return func(d protocol.DispatchRequest) protocol.CallbackRequest {
		var in struct {
			N int `json:"n"`
		}
		if err := json.Unmarshal(e.itemInput(d), &in); err != nil {
			e.t.Errorf("input of %s: %v", d.RunID, err)
		}
		if fail != nil && fail(in.N) {
			return failWith(fmt.Sprintf("n=%d failed", in.N), false)(d)
		}
		return e.result(d, fmt.Sprintf(`{%q:%d}`, d.TaskID, in.N))
	}
}

// spawnDoc is what join's dispatch carries for plan: {"output": ..., "items": [...]}, read from
// storage when stored, with each stored output read too.
func (e *env) spawnDoc(d protocol.DispatchRequest) (own json.RawMessage, items []json.RawMessage) {
	e.t.Helper()
	ref, ok := d.UpstreamRefs["plan"]
	require.True(e.t, ok, "join's upstream has plan: %v", upstreamKeys(d))
	data := []byte(ref.Output)
	if data == nil {
		data = e.object(ref.OutputPath).Content
	}
	var doc struct {
		Output json.RawMessage   `json:"output"`
		Items  []json.RawMessage `json:"items"`
	}
	require.NoError(e.t, json.Unmarshal(data, &doc), "%s", data)
	deref := func(v json.RawMessage) json.RawMessage {
		var r struct {
			OutputPath string `json:"outputPath"`
		}
		if json.Unmarshal(v, &r) == nil && r.OutputPath != "" {
			return e.object(r.OutputPath).Content
		}
		return v
	}
	for _, it := range doc.Items {
		if string(it) == "null" {
			items = append(items, nil)
			continue
		}
		items = append(items, deref(it))
	}
	return deref(doc.Output), items
}

// spawnRow reads plan's row in pipeline run id.
func (e *env) spawnRow(runID string) (id, status, code string, total, left *int) {
	e.t.Helper()
	require.NoError(e.t, e.pool.QueryRow(context.Background(), `SELECT id, status, coalesce(error_code, ''), items_total, items_left
		FROM task_runs WHERE pipeline_run_id = $1 AND task_id = 'plan' AND item_index IS NULL AND superseded_by IS NULL`, runID).
		Scan(&id, &status, &code, &total, &left))
	return
}

// A spawn node spawns 50 runs of two tasks; join receives plan's own output and the spawned
// outputs in index order, inline or stored; each spawned run is dispatched once and shows
// spawnedBy; the spawning row shows its counts.
func TestSpawnNodeSpawnsAndJoins(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, func(t *testing.T, inline func(*core.Config)) {
		e := newEnv(t, inline)
		w := newPWorker(t, e)
		spawnPipeline(e, w, "fan", nil)
		const n = 50
		w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
			cb := e.result(d, `{"planned":50}`)
			cb.Spawn = spawnEntries(n)
			cb.Spawn[0].Input = nil // no input: the run's input is JSON null (n reads as 0)
			return cb
		})
		w.on("a", spawnedAnswer(e, nil))
		w.on("b", spawnedAnswer(e, nil))
		id := e.trigger("fan", map[string]any{"input": 1})
		r := e.waitRun(id, "completed")
		rowID, status, code, total, left := e.spawnRow(id)
		require.Equal(t, "completed", status)
		require.Empty(t, code)
		require.Equal(t, n, *total)
		require.Zero(t, *left)
		require.Len(t, w.dispatchesOf("plan"), 1)
		spawned := append(w.dispatchesOf("a"), w.dispatchesOf("b")...)
		require.Len(t, spawned, n, "each spawned run is dispatched once")
		seen := map[string]bool{}
		for _, d := range spawned {
			require.Equal(t, 1, d.Attempt)
			require.Equal(t, id, d.PipelineRunID)
			require.False(t, seen[d.RunID])
			seen[d.RunID] = true
		}
		join := w.dispatchesOf("join")
		require.Len(t, join, 1)
		own, items := e.spawnDoc(join[0])
		require.JSONEq(t, `{"planned":50}`, string(own))
		require.Len(t, items, n)
		for i, v := range items {
			task := "a"
			if i%2 == 1 {
				task = "b"
			}
			require.JSONEq(t, fmt.Sprintf(`{%q:%d}`, task, i), string(v))
		}
		require.Equal(t, "completed", r.node("join").Status)
		// GET /api/runs/{id} of a spawned run names its spawning row; the spawning row its counts.
		var got protocol.TaskRun
		e.do("GET", "/api/task-runs/"+spawned[0].RunID, nil, "").json(t, &got)
		require.Equal(t, rowID, got.SpawnedBy)
		require.NotNil(t, got.ItemIndex)
		var row protocol.TaskRun
		e.do("GET", "/api/task-runs/"+rowID, nil, "").json(t, &row)
		require.Empty(t, row.SpawnedBy)
		require.Equal(t, n, *row.ItemsTotal)
		require.Zero(t, *row.ItemsLeft)

		// The spawning callback sent again once applied is a duplicate: nothing is spawned or
		// stored again (with inline payloads off, each entry's input would be a new object).
		before, storedBefore := e.count(`SELECT count(*) FROM task_runs`), countFiles(t, e.storageDir)
		plan := w.dispatchesOf("plan")[0]
		again := e.result(plan, `{"planned":50}`)
		again.Spawn = spawnEntries(n)
		httpStatus, body := w.callback(plan, again)
		require.Equal(t, http.StatusOK, httpStatus, string(body))
		var ans struct {
			Applied bool `json:"applied"`
		}
		require.NoError(t, json.Unmarshal(body, &ans))
		require.False(t, ans.Applied, string(body))
		require.Equal(t, before, e.count(`SELECT count(*) FROM task_runs`))
		require.Equal(t, storedBefore, countFiles(t, e.storageDir))
	})
}

// A spawn node whose callback spawns nothing (spawn: [] or no spawn) completes as an ordinary
// node: join gets its plain output.
func TestSpawnNodeSpawnsNothing(t *testing.T) {
	t.Parallel()
	for name, entries := range map[string][]protocol.SpawnRequest{"empty": {}, "absent": nil} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := newPWorker(t, e)
			spawnPipeline(e, w, "fan", nil)
			w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
				cb := e.result(d, `{"planned":0}`)
				cb.Spawn = entries
				return cb
			})
			id := e.trigger("fan", map[string]any{"input": 1})
			e.waitRun(id, "completed")
			_, status, _, total, _ := e.spawnRow(id)
			require.Equal(t, "completed", status)
			require.Nil(t, total)
			join := w.dispatchesOf("join")
			require.Len(t, join, 1)
			require.JSONEq(t, `{"planned":0}`, string(join[0].UpstreamRefs["plan"].Output))
			require.Empty(t, w.dispatchesOf("a"))
		})
	}
}

// Each bad spawn is a 400 naming the problem that writes nothing and leaves the run running;
// the worker's corrected callback then works.
func TestSpawnBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", map[string]any{"maxItems": 3})
	// Another service's task, which plan may not spawn.
	e.register("other", "1", w.URL(), task("foreign"))
	rows := func() int { return e.count(`SELECT count(*) FROM task_runs`) }
	type refusal struct {
		status int
		code   string
	}
	var refusals atomic.Value
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		var got []refusal
		for _, entries := range [][]protocol.SpawnRequest{
			spawnEntries(4), // over maxItems
			{{TaskID: "foreign"}},
			{{TaskID: "a"}, {TaskID: "ghost"}},
			{{TaskID: "not/an id"}},
		} {
			before := rows()
			cb := e.result(d, `{"planned":true}`)
			cb.Spawn = entries
			status, body := w.callback(d, cb)
			var eb protocol.ErrorBody
			_ = json.Unmarshal(body, &eb)
			got = append(got, refusal{status, eb.Code})
			if rows() != before {
				t.Errorf("a refused spawn wrote rows")
			}
			var st string
			if err := e.pool.QueryRow(context.Background(), `SELECT status FROM task_runs WHERE id = $1`, d.RunID).Scan(&st); err != nil || (st != "running" && st != "dispatching") {
				t.Errorf("the run is %s after a refused spawn (%v)", st, err)
			}
		}
		refusals.Store(got)
		cb := e.result(d, `{"planned":true}`)
		cb.Spawn = spawnEntries(3)
		return cb
	})
	// A run that may not spawn: its spawn is refused, and its plain callback then works.
	refusedSpawn := func(what string) func(protocol.DispatchRequest) protocol.CallbackRequest {
		return func(d protocol.DispatchRequest) protocol.CallbackRequest {
			cb := e.result(d, `{}`)
			cb.Spawn = spawnEntries(1)
			status, body := w.callback(d, cb)
			var eb protocol.ErrorBody
			_ = json.Unmarshal(body, &eb)
			if status != http.StatusBadRequest || eb.Code != "SPAWN_NOT_DECLARED" {
				t.Errorf("%s: %d %s", what, status, body)
			}
			return e.result(d, `{}`)
		}
	}
	w.on("join", refusedSpawn("join's spawn (not a spawn node)"))
	w.on("a", refusedSpawn("a spawned run's spawn (not the node's own run)"))
	id := e.trigger("fan", map[string]any{"input": 1})
	e.waitRun(id, "completed")
	require.Equal(t, 3, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND spawned_by IS NOT NULL`, id),
		"the spawned runs' refused spawns added none")
	require.Equal(t, []refusal{{400, "SPAWN_TOO_MANY"}, {400, "SPAWN_TASK_UNKNOWN"}, {400, "SPAWN_TASK_UNKNOWN"}, {400, "SPAWN_TASK_UNKNOWN"}},
		refusals.Load())
	require.Len(t, append(w.dispatchesOf("a"), w.dispatchesOf("b")...), 3)
	require.Empty(t, w.dispatchesOf("foreign"))

	// A standalone run may not spawn either.
	sw := newWorker(t, e.url)
	e.register("solo", "1", sw.URL(), task("single"))
	e.enqueue(map[string]any{"taskId": "single", "input": map[string]any{}})
	sw.waitDispatches(1)
	d := sw.all()[0]
	status, body := sw.callback(d, protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(d.RunID),
		Spawn: []protocol.SpawnRequest{{TaskID: "single"}}})
	require.Equal(t, http.StatusBadRequest, status, string(body))
	require.Contains(t, string(body), "SPAWN_NOT_DECLARED")
	status, body = sw.callback(d, success(d))
	require.Equal(t, http.StatusOK, status, string(body))

	// Declarations: maxConcurrency and maxItems bounded, one kind per node.
	for name, c := range map[string]struct {
		node map[string]any
		code string
	}{
		"maxConcurrency 0":   {map[string]any{"spawn": map[string]any{"maxConcurrency": 0}}, "SPAWN_MAX_CONCURRENCY_INVALID"},
		"maxConcurrency -1":  {map[string]any{"spawn": map[string]any{"maxConcurrency": -1}}, "SPAWN_MAX_CONCURRENCY_INVALID"},
		"maxItems over":      {map[string]any{"spawn": map[string]any{"maxItems": 10_001}}, "SPAWN_MAX_ITEMS_INVALID"},
		"maxItems below":     {map[string]any{"spawn": map[string]any{"maxItems": -1}}, "SPAWN_MAX_ITEMS_INVALID"},
		"spawn and map":      {map[string]any{"spawn": map[string]any{}, "map": map[string]any{"over": "plan", "items": ""}}, "INVALID_NODES"},
		"spawn and pipeline": {map[string]any{"spawn": map[string]any{}, "pipeline": "fan"}, "INVALID_NODES"},
		"unknown node":       {nil, "SPAWN_NODE_UNKNOWN"},
	} {
		nodes := map[string]any{"plan": c.node}
		if c.node == nil {
			nodes = map[string]any{"ghost": map[string]any{"spawn": map[string]any{}}}
		}
		r := e.do("PUT", "/api/pipelines/bad", map[string]any{"entryTasks": []string{"plan"}, "nodes": nodes}, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", name, r.Body)
		require.Equal(t, c.code, r.errorBody(t).Code, name)
	}
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/pipelines/bad", nil, "").Status)
}

// Failing spawned runs (no retries) in each failure mode: fail-fast fails the spawning row
// (SPAWN_ITEM_FAILED) and the run and cancels the siblings not started; continue completes it
// with null for the failed run (SPAWN_ITEMS_FAILED), the run failed; partial-merge likewise,
// the run partial.
func TestSpawnNodeFailureModes(t *testing.T) {
	t.Parallel()
	const n = 6
	bad := func(i int) bool { return i == 2 }
	t.Run("fail-fast", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		spawnPipeline(e, w, "fan", nil, func(td *protocol.TaskDefinition) { td.Concurrency = ptr(1) })
		w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
			cb := e.result(d, `{}`)
			cb.Spawn = []protocol.SpawnRequest{}
			for i := range n {
				cb.Spawn = append(cb.Spawn, protocol.SpawnRequest{TaskID: "a", Input: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
			}
			return cb
		})
		w.on("a", spawnedAnswer(e, bad))
		id := e.trigger("fan", map[string]any{"input": 1})
		r := e.waitRun(id, "failed")
		_, status, code, _, _ := e.spawnRow(id)
		require.Equal(t, "failed", status)
		require.Equal(t, "SPAWN_ITEM_FAILED", code)
		require.Equal(t, "cancelled", r.node("join").Status)
		open := e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1
			AND spawned_by IS NOT NULL AND status IN ('pending', 'waiting')`, id)
		require.Zero(t, open, "the siblings not started are cancelled")
		require.Less(t, len(w.dispatchesOf("a")), n)
	})
	for _, c := range []struct{ mode, ended string }{{"continue", "failed"}, {"partial-merge", "partial"}} {
		t.Run(c.mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := newPWorker(t, e)
			spawnPipeline(e, w, "fan", nil)
			w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
				cb := e.result(d, `{"own":1}`)
				cb.Spawn = spawnEntries(n)
				return cb
			})
			w.on("a", spawnedAnswer(e, bad))
			w.on("b", spawnedAnswer(e, bad))
			id := e.trigger("fan", map[string]any{"input": 1, "failureMode": c.mode})
			r := e.waitRun(id, c.ended)
			_, status, code, _, _ := e.spawnRow(id)
			require.Equal(t, "completed", status)
			require.Equal(t, "SPAWN_ITEMS_FAILED", code)
			require.Contains(t, *r.node("plan").Error, "1 of 6 spawned runs failed: 2")
			require.Equal(t, "completed", r.node("join").Status)
			own, items := e.spawnDoc(w.dispatchesOf("join")[0])
			require.JSONEq(t, `{"own":1}`, string(own))
			require.Len(t, items, n)
			require.Nil(t, items[2])
			require.JSONEq(t, `{"b":3}`, string(items[3]))
		})
	}
}

// Cancelling the pipeline run cancels its spawned runs like any open row.
func TestSpawnNodeCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", nil)
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := e.result(d, `{}`)
		cb.Spawn = spawnEntries(10)
		return cb
	})
	release := w.holdTask("a")
	defer release()
	id := e.trigger("fan", map[string]any{"input": 1})
	w.waitUntil("a dispatched", func() bool { return len(w.dispatchesOf("a")) > 0 })
	r := e.do("POST", "/api/runs/"+id+"/cancel", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	e.waitRun(id, "cancelled")
	open := e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1
		AND status IN ('pending', 'waiting')`, id)
	require.Zero(t, open, "nothing of the run is left to start")
	_, status, _, _, _ := e.spawnRow(id)
	require.Equal(t, "cancelled", status)
	release()
	w.waitUntil("the held runs called back", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["a"]) == len(w.dispatchesOf("a"))
	})
	require.Empty(t, w.dispatchesOf("join"))
}

// 200 spawned runs whose callbacks arrive at once (each dispatch answered from its own
// goroutine) resolve the spawning row exactly once, three times over.
func TestSpawnNodeConcurrentCallbacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", nil)
	const n = 200
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := e.result(d, `{}`)
		cb.Spawn = spawnEntries(n)
		return cb
	})
	w.on("a", spawnedAnswer(e, nil))
	w.on("b", spawnedAnswer(e, nil))
	for round := range 3 {
		id := e.trigger("fan", map[string]any{"input": round})
		waitRunPatiently(e, id, "completed")
		_, status, _, total, left := e.spawnRow(id)
		require.Equal(t, "completed", status)
		require.Equal(t, n, *total)
		require.Zero(t, *left)
		var joins, done int
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE task_id = 'join'),
			count(*) FILTER (WHERE spawned_by IS NOT NULL AND status = 'completed') FROM task_runs WHERE pipeline_run_id = $1`, id).Scan(&joins, &done))
		require.Equal(t, 1, joins)
		require.Equal(t, n, done)
	}
	require.Len(t, w.dispatchesOf("join"), 3, "join runs once per round")
	for _, d := range w.dispatchesOf("join") {
		_, items := e.spawnDoc(d)
		require.Len(t, items, n)
	}
}

// A DLQ retry of a failed spawned run while its spawning row still waits is one more run to
// wait for; once the row ended, a retry is 409 SPAWN_REOPEN_UNSUPPORTED and writes nothing.
func TestSpawnNodeDLQRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", nil)
	const n = 4
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := e.result(d, `{}`)
		cb.Spawn = spawnEntries(n)
		return cb
	})
	var failedOnce atomic.Bool
	answer := spawnedAnswer(e, func(i int) bool { return i == 2 && failedOnce.CompareAndSwap(false, true) })
	gate := make(chan struct{})
	w.on("a", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		var in struct {
			N int `json:"n"`
		}
		_ = json.Unmarshal(e.itemInput(d), &in)
		if in.N != 2 || failedOnce.Load() {
			<-gate
		}
		return answer(d)
	})
	w.on("b", spawnedAnswer(e, nil))
	id := e.trigger("fan", map[string]any{"input": 1, "failureMode": "continue"})
	dlqOf := func(index int) string {
		var dlqID string
		require.Eventually(t, func() bool {
			return e.pool.QueryRow(context.Background(), `SELECT d.id FROM dlq d JOIN task_runs tr ON tr.id = d.task_run_id
				WHERE tr.pipeline_run_id = $1 AND tr.item_index = $2 AND d.retried_at IS NULL`, id, index).Scan(&dlqID) == nil
		}, 30*time.Second, 10*time.Millisecond)
		return dlqID
	}
	resp := e.do("POST", "/api/dlq/"+dlqOf(2)+"/retry", nil, "")
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	rowID, _, _, _, _ := e.spawnRow(id)
	// The retry is one more run to wait for: the row waits for exactly its open runs.
	var left, open int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT items_left, (SELECT count(*) FROM task_runs
		WHERE spawned_by = $1 AND superseded_by IS NULL AND status NOT IN ('completed', 'failed', 'cancelled', 'skipped'))
		FROM task_runs WHERE id = $1`, rowID).Scan(&left, &open))
	require.Equal(t, open, left, "the retry is one more run to wait for")
	require.GreaterOrEqual(t, left, 2, "the gated run and the retry")
	close(gate)
	e.waitRun(id, "completed")
	_, status, code, _, leftAtEnd := e.spawnRow(id)
	require.Equal(t, "completed", status)
	require.Empty(t, code)
	require.Zero(t, *leftAtEnd)
	_, items := e.spawnDoc(w.dispatchesOf("join")[0])
	require.Len(t, items, n)
	require.JSONEq(t, `{"a":2}`, string(items[2]))
	var retried protocol.TaskRun
	e.do("GET", "/api/task-runs/"+w.dispatchesOf("a")[len(w.dispatchesOf("a"))-1].RunID, nil, "").json(t, &retried)
	require.Equal(t, rowID, retried.SpawnedBy)

	// After the row ended: a failed spawned run of another pipeline run cannot be retried.
	w.on("b", spawnedAnswer(e, func(i int) bool { return i == 1 }))
	id2 := e.trigger("fan", map[string]any{"input": 2, "failureMode": "continue"})
	e.waitRun(id2, "failed")
	id = id2
	dlqID := dlqOf(1)
	before := e.count(`SELECT count(*) FROM task_runs`)
	resp = e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	require.Equal(t, "SPAWN_REOPEN_UNSUPPORTED", resp.errorBody(t).Code)
	require.Equal(t, before, e.count(`SELECT count(*) FROM task_runs`))
}

// A DLQ retry that would put back a spawn node cancelled after it spawned (fail-fast: another
// entry task failed) is 409 SPAWN_REOPEN_UNSUPPORTED and changes nothing.
func TestSpawnNodeReopenRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("svc", "1", w.URL(), task("plan", next("join")), task("join"), task("a"), task("b"), task("side"))
	r := e.do("PUT", "/api/pipelines/fan", map[string]any{"entryTasks": []string{"plan", "side"},
		"nodes": map[string]any{"plan": map[string]any{"spawn": map[string]any{}}}}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := e.result(d, `{}`)
		cb.Spawn = spawnEntries(4)
		return cb
	})
	release := w.holdTask("a")
	sideGate := make(chan struct{})
	w.on("side", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		<-sideGate
		return failWith("side failed", false)(d)
	})
	id := e.trigger("fan", map[string]any{"input": 1})
	w.waitUntil("a dispatched", func() bool { return len(w.dispatchesOf("a")) > 0 })
	close(sideGate)
	e.waitRun(id, "failed")
	release()
	w.waitUntil("the held runs called back", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["a"]) == len(w.dispatchesOf("a"))
	})
	_, status, _, total, _ := e.spawnRow(id)
	require.Equal(t, "cancelled", status)
	require.Equal(t, 4, *total)
	var dlqID string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT d.id FROM dlq d JOIN task_runs tr ON tr.id = d.task_run_id
		WHERE tr.pipeline_run_id = $1 AND tr.task_id = 'side'`, id).Scan(&dlqID))
	resp := e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	require.Equal(t, "SPAWN_REOPEN_UNSUPPORTED", resp.errorBody(t).Code)
	require.Equal(t, "failed", e.pipelineRun(id).Status)
}

// A map item's callback may spawn more items of its own map (same task), up to the map's
// maxItems in all: merge receives every item's output in index order, the spawned ones after
// the fan-out's. Spawning another task, or past maxItems, is a 400 that writes nothing.
func TestMapItemSpawnsItems(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, func(t *testing.T, inline func(*core.Config)) {
		e := newEnv(t, inline)
		w := newPWorker(t, e)
		mapPipeline(e, w, "pages", map[string]any{"maxItems": 5})
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(3)) })
		ocr := pageOCR(e, nil)
		var refusals atomic.Value
		w.on("ocr", func(d protocol.DispatchRequest) protocol.CallbackRequest {
			cb := ocr(d)
			if !strings.Contains(string(e.itemInput(d)), `"n":0`) {
				return cb
			}
			var got []string
			for _, entries := range [][]protocol.SpawnRequest{
				{{TaskID: "ocr", Input: json.RawMessage(`{"n":3}`)}, {TaskID: "ocr", Input: json.RawMessage(`{"n":4}`)}, {TaskID: "ocr", Input: json.RawMessage(`{"n":5}`)}},
				{{TaskID: "merge"}},
			} {
				bad := cb
				bad.Spawn = entries
				status, body := w.callback(d, bad)
				var eb protocol.ErrorBody
				_ = json.Unmarshal(body, &eb)
				got = append(got, fmt.Sprintf("%d %s", status, eb.Code))
			}
			refusals.Store(got)
			cb.Spawn = []protocol.SpawnRequest{{TaskID: "ocr", Input: json.RawMessage(`{"n":3}`)}, {TaskID: "ocr", Input: json.RawMessage(`{"n":4}`)}}
			return cb
		})
		id := e.trigger("pages", map[string]any{"input": 1})
		e.waitRun(id, "completed")
		require.Equal(t, []string{"400 SPAWN_TOO_MANY", "400 SPAWN_TASK_UNKNOWN"}, refusals.Load())
		status, _, total, left := e.mapRowOf(id, "ocr")
		require.Equal(t, "completed", status)
		require.Equal(t, 5, *total)
		require.Zero(t, *left)
		require.Len(t, w.dispatchesOf("ocr"), 5)
		merge := w.dispatchesOf("merge")
		require.Len(t, merge, 1)
		arr := e.mergedArray(merge[0])
		require.Len(t, arr, 5)
		for i, v := range arr {
			data := []byte(v)
			var ref struct {
				OutputPath string `json:"outputPath"`
			}
			if json.Unmarshal(v, &ref) == nil && ref.OutputPath != "" {
				data = e.object(ref.OutputPath).Content
			}
			require.JSONEq(t, fmt.Sprintf(`{"text":"page-%d"}`, i), string(data))
		}
		// The refused spawn past maxItems (checked in the callback's transaction, after the
		// inputs too large to be inline were stored) left none of them behind.
		_, orphans := e.storedRunInputs()
		require.Zero(t, orphans, "inputs stored for a refused spawn")
	})
}

// A pipeline run's deadline cancels its spawned runs like any open row, and its spawning row.
func TestSpawnNodeDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.Mode = core.ModeStandalone; c.PollInterval = 20 * time.Millisecond })
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", nil, func(td *protocol.TaskDefinition) { td.Concurrency = ptr(1) })
	w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		cb := e.result(d, `{}`)
		cb.Spawn = spawnEntries(6)
		return cb
	})
	release := w.holdTask("a")
	e.runLoop()
	id := e.trigger("fan", map[string]any{"input": 1, "timeoutMs": 3_600_000})
	w.waitUntil("a to run", func() bool { return len(w.dispatchesOf("a")) == 1 })
	e.waitStatus(w.dispatchesOf("a")[0].RunID, protocol.StatusRunning)
	e.runOutOfTime(id)
	run := e.waitRun(id, "failed")
	require.Equal(t, protocol.PipelineTimeout, run.ErrorCode)
	release()
	w.waitUntil("a's late callback", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["a"]) == 1
	})
	open := e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1
		AND status IN ('pending', 'waiting')`, id)
	require.Zero(t, open, "nothing of the run is left to start")
	_, status, _, _, _ := e.spawnRow(id)
	require.Equal(t, "cancelled", status)
	require.Len(t, w.dispatchesOf("a"), 1)
	require.Empty(t, w.dispatchesOf("join"))
}

// The dry run marks a spawn node with its declaration (maxItems filled in) and an unknown item
// count, as it does a map node; the plan is otherwise the pipeline's.
func TestSpawnNodeInTheDryRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	spawnPipeline(e, w, "fan", map[string]any{"maxConcurrency": 4})
	var plan protocol.DryRun
	r := e.do("POST", "/api/pipelines/fan/dry-run", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r.json(t, &plan)
	require.True(t, plan.Valid)
	require.Len(t, plan.ExecutionPlan, 2)
	require.Equal(t, map[string]protocol.PlanNode{"plan": {Type: "spawn", Spawn: &protocol.SpawnConfig{MaxItems: 10_000, MaxConcurrency: ptr(4)},
		ItemCount: protocol.ItemCountUnknown}}, plan.ExecutionPlan[0].Nodes)
	require.Nil(t, plan.ExecutionPlan[1].Nodes, "join is an ordinary task")
	require.Contains(t, string(r.Body), `"type":"spawn"`)
}
