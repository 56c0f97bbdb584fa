package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/testdb"
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
		testorch.EachInlineThreshold(t, func(t *testing.T, inline func(*core.Config)) {
			e := newEnv(t, inline)
			w := newPWorker(t, e)
			mapPipeline(e, w, "pages", nil)
			w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, `{"pages":[]}`) })
			id := e.trigger("pages", map[string]any{"input": 1})
			e.waitRun(id, "completed")
			require.Empty(t, w.dispatchesOf("ocr"))
			merge := w.dispatchesOf("merge")[0]
			require.Empty(t, e.mergedArray(merge))
			// Like every map output, [] is inline only when INLINE_PAYLOAD_MAX_BYTES lets it be.
			require.Equal(t, e.cfg.InlinePayloadMaxBytes > 0, merge.UpstreamRefs["ocr"].Output != nil)
		})
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
// arrive at once (the worker answers each dispatch from its own goroutine); then three maps of
// 100 items, the racy part again. The first fan-out grew task_runs by more than a tenth, so the
// engine analyzed it (mapstats.go).
func TestMapNodeThousandItemsConcurrentCallbacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	mapPipeline(e, w, "pages", nil, func(td *protocol.TaskDefinition) { td.Concurrency = ptr(64) })
	var size atomic.Int64
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		return e.result(d, pagesOutput(int(size.Load())))
	})
	w.on("ocr", pageOCR(e, nil))
	for round, n := range []int{1_000, 100, 100, 100} {
		// One run at a time: two 1,000-item runs at once took longer than a test signal's wait
		// (30 s) under -race on the loaded CI machine.
		size.Store(int64(n))
		id := e.trigger("pages", map[string]any{"input": round})
		waitRunPatiently(e, id, "completed")
		checkMapRun(e, w, id, n)
		if round == 0 {
			require.Eventually(t, func() bool {
				var analyzed bool
				require.NoError(t, e.pool.QueryRow(context.Background(),
					`SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relid = 'pipeweave.task_runs'::regclass`).Scan(&analyzed))
				return analyzed
			}, time.Minute, 50*time.Millisecond, "task_runs analyzed after the fan-out")
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.statuses["ocr"] {
		require.Equal(t, http.StatusOK, s)
	}
}

// checkMapRun checks the completed map run id of n items: each item dispatched once (attempt
// 1) and completed once, the map row's counters, and merge's one dispatch with the ordered
// array.
func checkMapRun(e *env, w *pworker, id string, n int) {
	e.t.Helper()
	t := e.t
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
	var completed, indexes int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT item_index) FROM task_runs
		WHERE pipeline_run_id = $1 AND item_index IS NOT NULL AND status = 'completed'`, id).Scan(&completed, &indexes))
	require.Equal(t, n, completed)
	require.Equal(t, n, indexes)
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

// A 1,000-item map survives a restart midway: when 300 items have called back, the instance
// that fanned out stops (Close, as on SIGTERM) and the load balancer in front of the workers
// (a reverse proxy) sends everything from then on to a new instance on the same database,
// which the scheduler calls (/api/process). Every item completes once and merge gets them all.
func TestMapNodeRestartMidway(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	a := newEnvOn(t, pool)
	var target atomic.Pointer[url.URL]
	u, err := url.Parse(a.url)
	require.NoError(t, err)
	target.Store(u)
	lb := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target.Load()) }})
	t.Cleanup(lb.Close)
	front := *a
	front.url = lb.URL
	w := newPWorker(t, &front)
	mapPipeline(&front, w, "pages", nil, func(td *protocol.TaskDefinition) { td.Concurrency = ptr(64) })
	const n = 1_000
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return front.result(d, pagesOutput(n)) })
	var answered atomic.Int64
	switched := make(chan struct{})
	var b *env
	ocr := pageOCR(&front, nil)
	w.on("ocr", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		if answered.Add(1) == 300 {
			b = newEnvOn(t, pool)
			next, err := url.Parse(b.url)
			if err != nil {
				t.Error(err)
			}
			target.Store(next)
			a.orch.Close()
			close(switched)
		}
		return ocr(d)
	})
	id := front.trigger("pages", map[string]any{"input": 1})
	<-switched
	// The scheduler of the new instance: what no callback chain dispatches, /api/process does.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				_, _, _ = post(b.url+"/api/process", nil, "")
			}
		}
	}()
	waitRunPatiently(b, id, "completed")
	close(stop)
	<-done
	checkMapRun(b, w, id, n)
}

// A DLQ retry of another node re-opens a map node that another node's failure cancelled after
// it fanned out: its items (which completed meanwhile) complete it at once, merge runs, and
// the run completes.
func TestMapNodeReopenedWithItsRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	e.register("pdf", "1", w.URL(), task("split", next("ocr", "side")), task("ocr", next("merge")), task("side"), task("merge"))
	r := e.do("PUT", "/api/pipelines/pages", map[string]any{"entryTasks": []string{"split"}, "nodes": mapNode("ocr", "split", "/pages", nil)}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(3)) })
	w.on("ocr", pageOCR(e, nil))
	var sideFailed atomic.Bool
	w.on("side", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		if sideFailed.CompareAndSwap(false, true) {
			return failWith("side failed", false)(d)
		}
		return success(d)
	})
	release := w.holdTask("ocr")
	id := e.trigger("pages", map[string]any{"input": 1})
	run := e.waitRun(id, "failed")
	release()
	status, _, total, _ := e.mapRowOf(id, "ocr")
	require.Equal(t, "cancelled", status)
	require.Equal(t, 3, *total, "the map had fanned out before side failed")
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.statuses["ocr"]) == 3
	}, 30*time.Second, 10*time.Millisecond, "the items called back")
	var dlqID string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT id FROM dlq WHERE task_run_id = $1`, run.node("side").ID).Scan(&dlqID))
	resp := e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
	require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
	e.waitRun(id, "completed")
	status, _, _, left := e.mapRowOf(id, "ocr")
	require.Equal(t, "completed", status)
	require.Zero(t, *left)
	merge := w.dispatchesOf("merge")
	require.Len(t, merge, 1)
	require.Len(t, e.mergedArray(merge[0]), 3)
}

// A DLQ retry of one failed item re-opens its map and the run in each failure mode: fail-fast
// puts the cancelled items back, continue and partial-merge run merge again on the new output;
// and while the map still waits for other items, the retry is one more item to wait for.
func TestMapNodeDLQRetryOfAnItem(t *testing.T) {
	t.Parallel()
	const n = 6
	itemDLQ := func(e *env, id string) string {
		var dlqID string
		require.Eventually(e.t, func() bool {
			return e.pool.QueryRow(context.Background(), `SELECT d.id FROM dlq d JOIN task_runs tr ON tr.id = d.task_run_id
				WHERE tr.pipeline_run_id = $1 AND tr.item_index = 2`, id).Scan(&dlqID) == nil
		}, 30*time.Second, 10*time.Millisecond)
		return dlqID
	}
	checkDone := func(e *env, w *pworker, id string, merges int) {
		e.waitRun(id, "completed")
		status, code, total, left := e.mapRowOf(id, "ocr")
		require.Equal(e.t, "completed", status)
		require.Empty(e.t, code)
		require.Equal(e.t, n, *total)
		require.Zero(e.t, *left)
		var completed, indexes int
		require.NoError(e.t, e.pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT item_index) FROM task_runs
			WHERE pipeline_run_id = $1 AND item_index IS NOT NULL AND superseded_by IS NULL AND status = 'completed'`, id).Scan(&completed, &indexes))
		require.Equal(e.t, n, completed)
		require.Equal(e.t, n, indexes)
		merge := w.dispatchesOf("merge")
		require.Len(e.t, merge, merges)
		arr := e.mergedArray(merge[len(merge)-1])
		require.Len(e.t, arr, n)
		for i, v := range arr {
			require.JSONEq(e.t, fmt.Sprintf(`{"text":"page-%d"}`, i), string(v))
		}
	}
	for _, c := range []struct {
		mode, ended string
		merges      int
	}{{"fail-fast", "failed", 1}, {"continue", "failed", 2}, {"partial-merge", "partial", 2}} {
		t.Run(c.mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := newPWorker(t, e)
			// One item at a time: under fail-fast, the items after the failed one are
			// cancelled before they start.
			mapPipeline(e, w, "pages", nil, func(td *protocol.TaskDefinition) { td.Concurrency = ptr(1) })
			w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
			var failedOnce atomic.Bool
			w.on("ocr", pageOCR(e, func(i int) bool { return i == 2 && failedOnce.CompareAndSwap(false, true) }))
			id := e.trigger("pages", map[string]any{"input": 1, "failureMode": c.mode})
			e.waitRun(id, c.ended)
			resp := e.do("POST", "/api/dlq/"+itemDLQ(e, id)+"/retry", nil, "")
			require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
			checkDone(e, w, id, c.merges)
		})
	}
	t.Run("while the map is open", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		mapPipeline(e, w, "pages", nil)
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
		var failedOnce atomic.Bool
		gate := make(chan struct{})
		ocr := pageOCR(e, func(i int) bool { return i == 2 && failedOnce.CompareAndSwap(false, true) })
		w.on("ocr", func(d protocol.DispatchRequest) protocol.CallbackRequest {
			// Only item 2's first attempt goes through before the gate opens.
			if !strings.Contains(string(e.itemInput(d)), `"n":2`) || failedOnce.Load() {
				<-gate
			}
			return ocr(d)
		})
		id := e.trigger("pages", map[string]any{"input": 1, "failureMode": "continue"})
		dlqID := itemDLQ(e, id)
		resp := e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
		require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
		_, _, _, left := e.mapRowOf(id, "ocr")
		require.Equal(t, n, *left, "the retry is one more item to wait for")
		close(gate)
		checkDone(e, w, id, 1)
		resp = e.do("POST", "/api/dlq/"+dlqID+"/retry", nil, "")
		require.Equal(t, http.StatusConflict, resp.Status)
		require.Equal(t, "ALREADY_RETRIED", resp.errorBody(t).Code)
	})
	t.Run("merge still waits for another branch", func(t *testing.T) {
		t.Parallel()
		// continue mode: the map completes (one item failed) while merge still waits for
		// side. The retry re-opens the map; merge must still wait for both, and run once.
		e := newEnv(t)
		w := newPWorker(t, e)
		e.register("pdf", "1", w.URL(), task("split", next("ocr", "side")), task("ocr", next("merge")), task("side", next("merge")), task("merge"))
		r := e.do("PUT", "/api/pipelines/pages", map[string]any{"entryTasks": []string{"split"}, "nodes": mapNode("ocr", "split", "/pages", nil)}, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
		var failedOnce atomic.Bool
		w.on("ocr", pageOCR(e, func(i int) bool { return i == 2 && failedOnce.CompareAndSwap(false, true) }))
		release := w.holdTask("side")
		id := e.trigger("pages", map[string]any{"input": 1, "failureMode": "continue"})
		require.Eventually(t, func() bool {
			status, _, _, _ := e.mapRowOf(id, "ocr")
			return status == "completed"
		}, 30*time.Second, 10*time.Millisecond, "the map completed with its failed item")
		resp := e.do("POST", "/api/dlq/"+itemDLQ(e, id)+"/retry", nil, "")
		require.Equal(t, http.StatusCreated, resp.Status, string(resp.Body))
		require.Eventually(t, func() bool {
			status, code, _, _ := e.mapRowOf(id, "ocr")
			return status == "completed" && code == ""
		}, 30*time.Second, 10*time.Millisecond, "the map completed again")
		require.Empty(t, w.dispatchesOf("merge"), "merge still waits for side")
		release()
		checkDone(e, w, id, 1)
	})
	t.Run("refused while merge runs", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		mapPipeline(e, w, "pages", nil)
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
		w.on("ocr", pageOCR(e, func(i int) bool { return i == 2 }))
		release := w.holdTask("merge")
		id := e.trigger("pages", map[string]any{"input": 1, "failureMode": "continue"})
		require.Eventually(t, func() bool { return len(w.dispatchesOf("merge")) == 1 }, 30*time.Second, 10*time.Millisecond)
		resp := e.do("POST", "/api/dlq/"+itemDLQ(e, id)+"/retry", nil, "")
		require.Equal(t, http.StatusConflict, resp.Status, string(resp.Body))
		require.Equal(t, "MAP_REOPEN_UNSUPPORTED", resp.errorBody(t).Code)
		require.Contains(t, resp.errorBody(t).Error, "merge")
		release()
		e.waitRun(id, "failed")
		status, code, _, _ := e.mapRowOf(id, "ocr")
		require.Equal(t, "completed", status)
		require.Equal(t, "MAP_ITEMS_FAILED", code)
	})
}
