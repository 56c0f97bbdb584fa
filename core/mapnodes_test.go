package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testorch"
)

// mapNode is a nodes declaration making task a map over over's output at items.
func mapNode(task, over, items string, extra map[string]any) map[string]any {
	m := map[string]any{"over": over, "items": items}
	for k, v := range extra {
		m[k] = v
	}
	return map[string]any{task: map[string]any{"map": m}}
}

// A map node's declaration is stored, shown by GET, and each problem is a 400 naming it that
// stores nothing.
func TestMapNodeDeclaration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	url := "http://127.0.0.1:9"
	e.register("pdf", "1", url, task("split", next("ocr")), task("ocr", next("merge")), task("merge"), task("lonely"))

	r := e.do("PUT", "/api/pipelines/pages", map[string]any{"entryTasks": []string{"split"},
		"nodes": mapNode("ocr", "split", "/pages", nil)}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var got protocol.Pipeline
	e.do("GET", "/api/pipelines/pages", nil, "").json(t, &got)
	require.True(t, got.Valid, got.Errors)
	require.Equal(t, &protocol.MapConfig{Over: "split", Items: "/pages", MaxItems: 10_000}, got.Tasks["ocr"].Map)
	require.Equal(t, "split", got.Nodes["ocr"].Map.Over)
	require.Nil(t, got.Tasks["merge"].Map)

	// The whole output as the items, and an explicit bound.
	r = e.do("PUT", "/api/pipelines/pages", map[string]any{"entryTasks": []string{"split"},
		"nodes": mapNode("ocr", "split", "", map[string]any{"maxItems": 5})}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	e.do("GET", "/api/pipelines/pages", nil, "").json(t, &got)
	require.Equal(t, &protocol.MapConfig{Over: "split", Items: "", MaxItems: 5}, got.Tasks["ocr"].Map)

	for name, c := range map[string]struct {
		nodes any
		entry []string
		code  string
	}{
		"unknown node task":     {mapNode("ghost", "split", "/pages", nil), nil, "MAP_NODE_UNKNOWN"},
		"unreachable node":      {mapNode("lonely", "split", "/pages", nil), nil, "MAP_NODE_UNKNOWN"},
		"over not predecessor":  {mapNode("merge", "split", "/pages", nil), nil, "MAP_OVER_NOT_PREDECESSOR"},
		"over a successor":      {mapNode("ocr", "merge", "/pages", nil), nil, "MAP_OVER_NOT_PREDECESSOR"},
		"over itself":           {mapNode("ocr", "ocr", "/pages", nil), nil, "MAP_OVER_NOT_PREDECESSOR"},
		"over not an id":        {mapNode("ocr", "a/b", "/pages", nil), nil, "MAP_OVER_INVALID"},
		"pointer without slash": {mapNode("ocr", "split", "pages", nil), nil, "MAP_ITEMS_POINTER_INVALID"},
		"pointer bad escape":    {mapNode("ocr", "split", "/pa~2ges", nil), nil, "MAP_ITEMS_POINTER_INVALID"},
		"maxItems zero":         {mapNode("ocr", "split", "/pages", map[string]any{"maxItems": -1}), nil, "MAP_MAX_ITEMS_INVALID"},
		"maxItems too large":    {mapNode("ocr", "split", "/pages", map[string]any{"maxItems": 10_001}), nil, "MAP_MAX_ITEMS_INVALID"},
		"maxConcurrency zero":   {mapNode("ocr", "split", "/pages", map[string]any{"maxConcurrency": 0}), nil, "MAP_MAX_CONCURRENCY_INVALID"},
		"entry task as map":     {mapNode("split", "ocr", "/pages", nil), nil, "MAP_ON_ENTRY_TASK"},
		"no map":                {map[string]any{"ocr": map[string]any{}}, nil, "INVALID_NODES"},
		"bad node id":           {mapNode("o/cr", "split", "/pages", nil), nil, "INVALID_NODES"},
	} {
		entry := c.entry
		if entry == nil {
			entry = []string{"split"}
		}
		r := e.do("PUT", "/api/pipelines/bad", map[string]any{"entryTasks": entry, "nodes": c.nodes}, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", name, r.Body)
		require.Equal(t, c.code, r.errorBody(t).Code, name)
		// Registration refuses the same declaration, and stores nothing of it.
		var def protocol.PipelineDefinition
		decodeInto(t, map[string]any{"id": "bad", "entryTasks": entry, "nodes": c.nodes}, &def)
		r = e.postReg("pdf2", protocol.RegisterRequest{ServiceID: "pdf2", Version: "1", BaseURL: url,
			Tasks: []protocol.TaskDefinition{task("other")}, Pipelines: []protocol.PipelineDefinition{def}})
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", name, r.Body)
		require.Equal(t, c.code, r.errorBody(t).Code, name)
	}
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/pipelines/bad", nil, "").Status)
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM services WHERE id = 'pdf2'").Scan(&n))
	require.Zero(t, n, "a refused registration stores nothing")

	// A registration may declare a map over its own new tasks.
	r = e.postReg("pdf3", protocol.RegisterRequest{ServiceID: "pdf3", Version: "1", BaseURL: url,
		Tasks: []protocol.TaskDefinition{task("s3", next("o3")), task("o3")},
		Pipelines: []protocol.PipelineDefinition{{ID: "p3", EntryTasks: []string{"s3"},
			Nodes: map[string]protocol.NodeConfig{"o3": {Map: &protocol.MapConfig{Over: "s3", Items: "/x"}}}}}})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	e.do("GET", "/api/pipelines/p3", nil, "").json(t, &got)
	require.True(t, got.Valid, got.Errors)
	require.Equal(t, 10_000, got.Tasks["o3"].Map.MaxItems)

	// A structure that no longer fits the declaration makes the pipeline invalid.
	e.register("pdf3", "1", url, task("s3"), task("o3"))
	e.do("GET", "/api/pipelines/p3", nil, "").json(t, &got)
	require.False(t, got.Valid)
	r = e.do("POST", "/api/pipelines/p3/trigger", map[string]any{"input": 1}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "PIPELINE_INVALID", r.errorBody(t).Code)
}

// decodeInto converts v to out through JSON.
func decodeInto(t *testing.T, v, out any) {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, out))
}

// itemInput is the input a dispatch carries, inline or read from storage.
func (e *env) itemInput(d protocol.DispatchRequest) []byte {
	if d.Input != nil {
		return d.Input
	}
	return readFile(e.t, filepath.Join(e.storageDir, filepath.FromSlash(d.InputPath)))
}

// pageOCR answers an item {"n": i} with {"text": "page-i"}; fail, when set, names the pages
// that fail for good.
func pageOCR(e *env, fail func(n int) bool) func(protocol.DispatchRequest) protocol.CallbackRequest {
	return func(d protocol.DispatchRequest) protocol.CallbackRequest {
		var in struct {
			N int `json:"n"`
		}
		if err := json.Unmarshal(e.itemInput(d), &in); err != nil {
			e.t.Errorf("item input of %s: %v", d.RunID, err)
		}
		if fail != nil && fail(in.N) {
			return failWith(fmt.Sprintf("page %d unreadable", in.N), false)(d)
		}
		return e.result(d, fmt.Sprintf(`{"text":"page-%d"}`, in.N))
	}
}

// pagesOutput is split's output with n pages {"n": i}.
func pagesOutput(n int) string {
	pages := make([]string, n)
	for i := range pages {
		pages[i] = fmt.Sprintf(`{"n":%d}`, i)
	}
	return `{"pages":[` + strings.Join(pages, ",") + `]}`
}

// mapPipeline registers split → ocr → merge on w with ocr a map over split's /pages.
func mapPipeline(e *env, w *pworker, id string, extra map[string]any, mods ...func(*protocol.TaskDefinition)) {
	e.register("pdf", "1", w.URL(), task("split", append(mods, next("ocr"))...), task("ocr", append(mods, next("merge"))...), task("merge", mods...))
	r := e.do("PUT", "/api/pipelines/"+id, map[string]any{"entryTasks": []string{"split"}, "nodes": mapNode("ocr", "split", "/pages", extra)}, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
}

// mapRowOf reads the map row of task in pipeline run id: its status, error code and counters.
func (e *env) mapRowOf(runID, task string) (status, code string, total, left *int) {
	e.t.Helper()
	require.NoError(e.t, e.pool.QueryRow(context.Background(), `SELECT status, coalesce(error_code, ''), items_total, items_left
		FROM task_runs WHERE pipeline_run_id = $1 AND task_id = $2 AND item_index IS NULL AND superseded_by IS NULL`, runID, task).
		Scan(&status, &code, &total, &left))
	return
}

// mergedArray is the map output merge's dispatch carries for ocr: inline, or read from storage.
func (e *env) mergedArray(d protocol.DispatchRequest) []json.RawMessage {
	e.t.Helper()
	ref, ok := d.UpstreamRefs["ocr"]
	require.True(e.t, ok, "merge's upstream has ocr: %v", upstreamKeys(d))
	data := []byte(ref.Output)
	if data == nil {
		data = e.object(ref.OutputPath).Content
	}
	var arr []json.RawMessage
	require.NoError(e.t, json.Unmarshal(data, &arr))
	return arr
}

// split → ocr (a map over split's /pages) → merge: every page is an item that runs once, and
// merge receives the items' outputs in index order, whether payloads are inline or stored.
func TestMapNodeFanOutAndMerge(t *testing.T) {
	t.Parallel()
	testorch.EachInlineThreshold(t, func(t *testing.T, inline func(*core.Config)) {
		e := newEnv(t, inline)
		w := newPWorker(t, e)
		mapPipeline(e, w, "pages", nil)
		const n = 50
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
		w.on("ocr", pageOCR(e, nil))
		id := e.trigger("pages", map[string]any{"input": map[string]string{"doc": "x"}})
		r := e.waitRun(id, "completed")
		status, code, total, left := e.mapRowOf(id, "ocr")
		require.Equal(t, "completed", status)
		require.Empty(t, code)
		require.Equal(t, n, *total)
		require.Zero(t, *left)
		items := w.dispatchesOf("ocr")
		require.Len(t, items, n, "each item is dispatched once, the map row never")
		seen := map[string]bool{}
		for _, d := range items {
			require.Equal(t, 1, d.Attempt)
			require.Equal(t, id, d.PipelineRunID)
			require.Empty(t, d.UpstreamRefs, "an item's upstream is its item")
			require.False(t, seen[d.RunID])
			seen[d.RunID] = true
		}
		merge := w.dispatchesOf("merge")
		require.Len(t, merge, 1)
		require.Equal(t, []string{"ocr"}, upstreamKeys(merge[0]), "only the map row is merge's upstream")
		arr := e.mergedArray(merge[0])
		require.Len(t, arr, n)
		inlineOn := e.cfg.InlinePayloadMaxBytes > 0
		for i, v := range arr {
			if inlineOn {
				require.JSONEq(t, fmt.Sprintf(`{"text":"page-%d"}`, i), string(v))
				continue
			}
			var ref struct {
				OutputPath string `json:"outputPath"`
			}
			require.NoError(t, json.Unmarshal(v, &ref))
			require.JSONEq(t, fmt.Sprintf(`{"text":"page-%d"}`, i), string(e.object(ref.OutputPath).Content))
		}
		require.Equal(t, "completed", r.node("merge").Status)
		var pointer string
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT snapshot->'tasks'->'ocr'->'map'->>'items' FROM pipeline_runs WHERE id = $1`, id).Scan(&pointer))
		require.Equal(t, "/pages", pointer, "the run's snapshot carries the declaration")
	})
}

// Bad items fail the map row with a code naming the problem; the run follows its failure mode.
// An empty array completes the map at once with [].
func TestMapNodeBadItems(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		output, code, msg string
		maxItems          int
	}{
		"missing pointer":   {`{"other":[1]}`, "MAP_ITEMS_INVALID", `items "/pages" does not resolve in the output of split`, 0},
		"object, not array": {`{"pages":{"a":1}}`, "MAP_ITEMS_INVALID", `items "/pages" selects a JSON object in the output of split, not an array`, 0},
		"string":            {`{"pages":"p"}`, "MAP_ITEMS_INVALID", "selects a JSON string", 0},
		"too many":          {pagesOutput(4), "MAP_TOO_LARGE", `items "/pages" has 4 elements; maxItems is 3`, 3},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := newPWorker(t, e)
			var extra map[string]any
			if c.maxItems > 0 {
				extra = map[string]any{"maxItems": c.maxItems}
			}
			mapPipeline(e, w, "pages", extra)
			w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, c.output) })
			id := e.trigger("pages", map[string]any{"input": 1})
			r := e.waitRun(id, "failed")
			status, code, _, _ := e.mapRowOf(id, "ocr")
			require.Equal(t, "failed", status)
			require.Equal(t, c.code, code)
			require.Contains(t, *r.node("ocr").Error, c.msg)
			require.Equal(t, "cancelled", r.node("merge").Status)
			require.Empty(t, w.dispatchesOf("ocr"))
			var n int
			require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM task_runs WHERE item_index IS NOT NULL").Scan(&n))
			require.Zero(t, n, "no item row")
		})
	}
	t.Run("continue skips the successors", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		mapPipeline(e, w, "pages", nil)
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, `{"pages":null}`) })
		id := e.trigger("pages", map[string]any{"input": 1, "failureMode": "continue"})
		r := e.waitRun(id, "failed")
		require.Contains(t, *r.node("ocr").Error, "selects a JSON null")
		require.Equal(t, "skipped", r.node("merge").Status)
	})
	t.Run("stored output missing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		mapPipeline(e, w, "pages", nil)
		// split reports an output in storage that it never wrote.
		id := e.trigger("pages", map[string]any{"input": 1})
		r := e.waitRun(id, "failed")
		_, code, _, _ := e.mapRowOf(id, "ocr")
		require.Equal(t, "MAP_ITEMS_INVALID", code)
		require.Contains(t, *r.node("ocr").Error, "is missing from storage")
	})
	t.Run("empty array", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		mapPipeline(e, w, "pages", nil)
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, `{"pages":[]}`) })
		id := e.trigger("pages", map[string]any{"input": 1})
		e.waitRun(id, "completed")
		require.Empty(t, w.dispatchesOf("ocr"))
		require.Empty(t, e.mergedArray(w.dispatchesOf("merge")[0]))
	})
}

// A failing item (no retries) in each failure mode: fail-fast fails the map row and the run and
// cancels the items not started; continue completes the map with null for the failed item and
// ends the run failed; partial-merge does the same and ends the run partial.
func TestMapNodeFailureModes(t *testing.T) {
	t.Parallel()
	const n = 6
	bad := func(i int) bool { return i == 2 }
	t.Run("fail-fast", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		mapPipeline(e, w, "pages", nil, func(td *protocol.TaskDefinition) { td.Concurrency = ptr(1) })
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
		w.on("ocr", pageOCR(e, bad))
		id := e.trigger("pages", map[string]any{"input": 1})
		r := e.waitRun(id, "failed")
		status, code, _, _ := e.mapRowOf(id, "ocr")
		require.Equal(t, "failed", status)
		require.Equal(t, "MAP_ITEM_FAILED", code)
		require.Equal(t, "cancelled", r.node("merge").Status)
		require.Contains(t, *r.Error, "ocr")
		var cancelled int
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM task_runs
			WHERE pipeline_run_id = $1 AND item_index IS NOT NULL AND status = 'cancelled'`, id).Scan(&cancelled))
		require.Equal(t, n-len(w.dispatchesOf("ocr")), cancelled, "the items not dispatched are cancelled")
		require.Empty(t, w.dispatchesOf("merge"))
	})
	for _, c := range []struct{ mode, status string }{{"continue", "failed"}, {"partial-merge", "partial"}} {
		t.Run(c.mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := newPWorker(t, e)
			mapPipeline(e, w, "pages", nil)
			w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
			w.on("ocr", pageOCR(e, bad))
			id := e.trigger("pages", map[string]any{"input": 1, "failureMode": c.mode})
			r := e.waitRun(id, c.status)
			status, code, _, left := e.mapRowOf(id, "ocr")
			require.Equal(t, "completed", status)
			require.Equal(t, "MAP_ITEMS_FAILED", code)
			require.Zero(t, *left)
			require.Contains(t, *r.node("ocr").Error, "1 of 6 items failed: 2")
			require.Len(t, w.dispatchesOf("ocr"), n)
			arr := e.mergedArray(w.dispatchesOf("merge")[0])
			require.Len(t, arr, n)
			for i, v := range arr {
				if bad(i) {
					require.Equal(t, "null", string(v))
				} else {
					require.JSONEq(t, fmt.Sprintf(`{"text":"page-%d"}`, i), string(v))
				}
			}
			require.Equal(t, "completed", r.node("merge").Status)
			// The failed item is in the DLQ; retrying one item is refused (not built yet) and
			// changes nothing.
			var dlqID string
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT d.id FROM dlq d JOIN task_runs tr ON tr.id = d.task_run_id
				WHERE tr.pipeline_run_id = $1 AND tr.item_index = 2`, id).Scan(&dlqID))
			resp := e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
			require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
			require.Equal(t, "MAP_ITEM_RETRY_UNSUPPORTED", resp.errorBody(t).Code)
			require.Equal(t, c.status, e.pipelineRun(id).Status)
			var open int
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM dlq WHERE id = $1 AND retry_run_id IS NULL`, dlqID).Scan(&open))
			require.Equal(t, 1, open, "the entry stays open")
		})
	}
}

// waitRunPatiently waits for pipeline run id to end with status, for up to three minutes: a
// 1,000-item map under -race, among the whole suite's tests on two cores, can go longer than a
// test signal's wait without any pipeline run ending. It is a guard, not a timed assertion.
func waitRunPatiently(e *env, id, status string) {
	e.t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); ; {
		r := e.pipelineRun(id)
		if r.Status != "running" {
			require.Equal(e.t, status, r.Status, "pipeline run %s: %+v", id, r.states())
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("pipeline run %s still running after three minutes: %+v", id, r.states())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A 1,000-item map completes with every item exactly once while many callbacks of its items
// arrive at once (the worker answers each dispatch from its own goroutine), in two rounds.
func TestMapNodeThousandItemsConcurrentCallbacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	mapPipeline(e, w, "pages", nil, func(td *protocol.TaskDefinition) { td.Concurrency = ptr(64) })
	const n = 1_000
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
	w.on("ocr", pageOCR(e, nil))
	for round := 0; round < 2; round++ {
		// One 1,000-item run per round: two at once took longer than a test signal's wait
		// (30 s) under -race on the loaded CI machine.
		ids := []string{e.trigger("pages", map[string]any{"input": round})}
		for _, id := range ids {
			waitRunPatiently(e, id, "completed")
			perItem := map[string]int{}
			for _, d := range w.dispatchesOf("ocr") {
				if d.PipelineRunID == id {
					require.Equal(t, 1, d.Attempt)
					perItem[d.RunID]++
				}
			}
			require.Len(t, perItem, n, "every item is dispatched")
			for runID, k := range perItem {
				require.Equal(t, 1, k, "item %s dispatched once", runID)
			}
			status, _, total, left := e.mapRowOf(id, "ocr")
			require.Equal(t, "completed", status)
			require.Equal(t, n, *total)
			require.Zero(t, *left)
			var completed int
			require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM task_runs
				WHERE pipeline_run_id = $1 AND item_index IS NOT NULL AND status = 'completed'`, id).Scan(&completed))
			require.Equal(t, n, completed)
			var merge protocol.DispatchRequest
			for _, d := range w.dispatchesOf("merge") {
				if d.PipelineRunID == id {
					require.Empty(t, merge.RunID, "merge is dispatched once")
					merge = d
				}
			}
			arr := e.mergedArray(merge)
			require.Len(t, arr, n)
			for i, v := range arr {
				require.JSONEq(t, fmt.Sprintf(`{"text":"page-%d"}`, i), string(v))
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.statuses["ocr"] {
		require.Equal(t, http.StatusOK, s)
	}
}

// A DLQ retry that would re-open a map node (cancelled by another node's failure) is refused:
// the map row must not come back as an ordinary pending node, and nothing changes.
func TestMapNodeReopenRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("pdf", "1", w.URL(), task("split", next("ocr", "side")), task("ocr", next("merge")), task("side"), task("merge"))
	r := e.do("PUT", "/api/pipelines/pages", map[string]any{"entryTasks": []string{"split"}, "nodes": mapNode("ocr", "split", "/pages", nil)}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(3)) })
	w.on("ocr", pageOCR(e, nil))
	w.on("side", failWith("side failed", false))
	release := w.holdTask("ocr")
	id := e.trigger("pages", map[string]any{"input": 1})
	run := e.waitRun(id, "failed")
	release()
	status, _, total, _ := e.mapRowOf(id, "ocr")
	require.Equal(t, "cancelled", status)
	require.Equal(t, 3, *total, "the map had fanned out before side failed")
	var dlqID string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT id FROM dlq WHERE task_run_id = $1`, run.node("side").ID).Scan(&dlqID))
	resp := e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
	require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
	require.Equal(t, "MAP_REOPEN_UNSUPPORTED", resp.errorBody(t).Code)
	require.Equal(t, "failed", e.pipelineRun(id).Status)
	status, _, _, _ = e.mapRowOf(id, "ocr")
	require.Equal(t, "cancelled", status)
}
