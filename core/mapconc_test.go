package core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// inFlight counts the items a worker holds at once, per pipeline run and per concurrency key
// (the customer of the run's input), and the most it ever saw.
type inFlight struct {
	mu             sync.Mutex
	byRun, byKey   map[string]int
	maxRun, maxKey map[string]int
	dispatched     int
	hold           time.Duration
	keyOf          func(d protocol.DispatchRequest) string
	// reach, when set, makes a held item wait (up to reachWait, once per pipeline run) until
	// that many items of its run were in flight at once, so that a test can require the bound
	// to be reached however slowly the machine claims.
	reach     int
	reachWait time.Duration
	gaveUp    map[string]bool
}

func newInFlight(hold time.Duration, keyOf func(protocol.DispatchRequest) string) *inFlight {
	return &inFlight{byRun: map[string]int{}, byKey: map[string]int{}, maxRun: map[string]int{}, maxKey: map[string]int{}, hold: hold, keyOf: keyOf}
}

// wrap makes w's ocr items count in f: a dispatch enters (before the worker answers it), its
// callback leaves after holding the item a moment (before the callback is sent, so that the
// worker's count never exceeds the database's).
func (f *inFlight) wrap(w *pworker) {
	w.answer = func(d protocol.DispatchRequest) int {
		if d.TaskID == "ocr" {
			f.mu.Lock()
			f.dispatched++
			f.byRun[d.PipelineRunID]++
			f.maxRun[d.PipelineRunID] = max(f.maxRun[d.PipelineRunID], f.byRun[d.PipelineRunID])
			if f.keyOf != nil {
				k := f.keyOf(d)
				f.byKey[k]++
				f.maxKey[k] = max(f.maxKey[k], f.byKey[k])
			}
			f.mu.Unlock()
		}
		return http.StatusAccepted
	}
	after := w.after
	w.after = func(d protocol.DispatchRequest) {
		if d.TaskID == "ocr" {
			time.Sleep(f.hold)
			f.awaitReach(d.PipelineRunID)
			f.mu.Lock()
			f.byRun[d.PipelineRunID]--
			if f.keyOf != nil {
				f.byKey[f.keyOf(d)]--
			}
			f.mu.Unlock()
		}
		after(d)
	}
}

// awaitReach waits until f.reach items of run were in flight at once, or f.reachWait has
// passed (then no item of the run waits again).
func (f *inFlight) awaitReach(run string) {
	if f.reach == 0 {
		return
	}
	deadline := time.Now().Add(f.reachWait)
	for {
		f.mu.Lock()
		if f.maxRun[run] >= f.reach || f.gaveUp[run] {
			f.mu.Unlock()
			return
		}
		if time.Now().After(deadline) {
			f.gaveUp[run] = true
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

// claimLoops runs Process on each instance until the test's context ends.
func claimLoops(t *testing.T, instances ...*env) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, inst := range instances {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := inst.orch.Process(ctx); err != nil && ctx.Err() == nil {
					t.Errorf("process: %v", err)
					return
				}
			}
		})
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// sampleInFlight reads, until stop is called, the most items of map node ocr of each pipeline
// run in flight at once (dispatching or running) as the database sees them, and the most per
// concurrency key of ocr's runs.
func (e *env) sampleInFlight() (stop func() (perRun, perKey int)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var perRun, perKey int
	wg.Go(func() {
		for {
			// A sample every millisecond: a tight loop took a core of the database from the
			// claims it watches (the worker counts every item in flight exactly anyway).
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			var r, k int
			err := e.pool.QueryRow(context.Background(), `SELECT
				coalesce((SELECT max(n) FROM (SELECT count(*) AS n FROM task_runs WHERE task_id = 'ocr' AND item_index IS NOT NULL
					AND status IN ('dispatching', 'running') GROUP BY pipeline_run_id) x), 0),
				coalesce((SELECT max(n) FROM (SELECT count(*) AS n FROM task_runs WHERE task_id = 'ocr'
					AND status IN ('dispatching', 'running') GROUP BY concurrency_key) y), 0)`).Scan(&r, &k)
			if err != nil {
				e.t.Errorf("sample in flight: %v", err)
				return
			}
			perRun, perKey = max(perRun, r), max(perKey, k)
		}
	})
	return func() (int, int) {
		close(done)
		wg.Wait()
		return perRun, perKey
	}
}

// A 100-item map with maxConcurrency 3, claimed by two instances at once while the worker
// holds each item a moment: the items of the map in flight never exceed 3, as the worker counts
// them and as the database does, and every item runs once. Two rounds.
func TestMapNodeMaxConcurrencyAcrossInstances(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := newEnvOn(t, e.pool, func(c *core.Config) { c.ProcessBatchSize = 7 })
	w := newPWorker(t, e)
	f := newInFlight(2*time.Millisecond, nil)
	// The first items wait for the third to arrive (a loaded machine claims slowly): the bound
	// is then reached unless the claims cannot put three items in flight.
	f.reach, f.reachWait, f.gaveUp = 3, 10*time.Second, map[string]bool{}
	f.wrap(w)
	mapPipeline(e, w, "pages", map[string]any{"maxConcurrency": 3}, func(td *protocol.TaskDefinition) { td.Concurrency = ptr(50) })
	const n = 100
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
	w.on("ocr", pageOCR(e, nil))
	stop := claimLoops(t, e, other)
	for round := range 2 {
		sample := e.sampleInFlight()
		id := e.trigger("pages", map[string]any{"input": round})
		waitRunPatiently(e, id, "completed")
		dbMax, _ := sample()
		require.LessOrEqual(t, dbMax, 3, "round %d: items in flight in the database", round)
		f.mu.Lock()
		require.LessOrEqual(t, f.maxRun[id], 3, "round %d: items the worker held at once", round)
		require.Equal(t, 3, f.maxRun[id], "round %d: the bound is reached (two instances claim)", round)
		f.mu.Unlock()
		perItem := map[string]int{}
		for _, d := range w.dispatchesOf("ocr") {
			if d.PipelineRunID == id {
				perItem[d.RunID]++
			}
		}
		require.Len(t, perItem, n)
		for runID, k := range perItem {
			require.Equal(t, 1, k, "item %s dispatched once", runID)
		}
		require.Len(t, e.mergedArray(w.dispatchesOf("merge")[round]), n)
	}
	stop()
	require.Zero(t, e.count(`SELECT count(*) FROM task_runs WHERE map_concurrency IS NOT NULL AND status <> 'completed'`))
}

// Two runs of a map of a task with a concurrency key, both runs on the same key: each map row
// keeps within its maxConcurrency (3) and the key within the task's concurrencyPerKey (4), so
// both bounds hold together; a run on another key is not held up by them.
func TestMapNodeMaxConcurrencyWithConcurrencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := newEnvOn(t, e.pool, func(c *core.Config) { c.ProcessBatchSize = 5 })
	w := newPWorker(t, e)
	runKey := sync.Map{}
	f := newInFlight(2*time.Millisecond, func(d protocol.DispatchRequest) string {
		k, _ := runKey.Load(d.PipelineRunID)
		s, _ := k.(string)
		return s
	})
	f.wrap(w)
	mapPipeline(e, w, "pages", map[string]any{"maxConcurrency": 3}, func(td *protocol.TaskDefinition) {
		td.Concurrency = ptr(50)
		td.ConcurrencyKey, td.ConcurrencyPerKey = "/customer", ptr(4)
	})
	const n = 60
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
	w.on("ocr", pageOCR(e, nil))
	sample := e.sampleInFlight()
	stop := claimLoops(t, e, other)
	var ids []string
	for _, c := range []string{"a", "a", "b"} {
		id := e.trigger("pages", map[string]any{"input": map[string]string{"customer": c}})
		runKey.Store(id, c)
		ids = append(ids, id)
	}
	for _, id := range ids {
		waitRunPatiently(e, id, "completed")
	}
	stop()
	perRun, perKey := sample()
	require.LessOrEqual(t, perRun, 3, "a map row's items in flight (database)")
	require.LessOrEqual(t, perKey, 4, "a key's runs in flight (database)")
	var keys []string
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT array_agg(DISTINCT concurrency_key ORDER BY concurrency_key) FROM task_runs WHERE task_id = 'ocr' AND item_index IS NOT NULL`).Scan(&keys))
	require.Equal(t, []string{`"a"`, `"b"`}, keys, "items carry their map row's concurrency key")
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		require.LessOrEqual(t, f.maxRun[id], 3, "run %s", id)
	}
	require.LessOrEqual(t, f.maxKey["a"], 4, "key a: both maps of the key together")
	require.LessOrEqual(t, f.maxKey["b"], 3)
}

// maxConcurrency with failing items: under fail-fast the first failure fails the map and
// cancels the items not started (none left in flight or pending); under continue a failed item
// frees its place and every item runs.
func TestMapNodeMaxConcurrencyFailureModes(t *testing.T) {
	t.Parallel()
	const n = 30
	bad := func(i int) bool { return i%7 == 3 }
	t.Run("fail-fast", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		f := newInFlight(time.Millisecond, nil)
		f.wrap(w)
		mapPipeline(e, w, "pages", map[string]any{"maxConcurrency": 2})
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
		w.on("ocr", pageOCR(e, bad))
		stop := claimLoops(t, e)
		id := e.trigger("pages", map[string]any{"input": 1})
		e.waitRun(id, "failed")
		stop()
		status, code, _, _ := e.mapRowOf(id, "ocr")
		require.Equal(t, "failed", status)
		require.Equal(t, "MAP_ITEM_FAILED", code)
		require.Zero(t, e.count(fmt.Sprintf(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = '%s' AND status = 'pending'`, id)))
		dispatched := len(w.dispatchesOf("ocr"))
		require.Less(t, dispatched, n, "the items not started are cancelled")
		require.Equal(t, n-dispatched, e.count(fmt.Sprintf(`SELECT count(*) FROM task_runs
			WHERE pipeline_run_id = '%s' AND item_index IS NOT NULL AND status = 'cancelled'`, id)))
		f.mu.Lock()
		defer f.mu.Unlock()
		require.LessOrEqual(t, f.maxRun[id], 2)
	})
	t.Run("continue", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		w := newPWorker(t, e)
		f := newInFlight(time.Millisecond, nil)
		f.wrap(w)
		mapPipeline(e, w, "pages", map[string]any{"maxConcurrency": 2})
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
		w.on("ocr", pageOCR(e, bad))
		claimLoops(t, e)
		id := e.trigger("pages", map[string]any{"input": 1, "failureMode": "continue"})
		e.waitRun(id, "failed")
		status, code, _, left := e.mapRowOf(id, "ocr")
		require.Equal(t, "completed", status)
		require.Equal(t, "MAP_ITEMS_FAILED", code)
		require.Zero(t, *left)
		require.Len(t, w.dispatchesOf("ocr"), n, "failed items free their places: every item runs")
		arr := e.mergedArray(w.dispatchesOf("merge")[0])
		for i, v := range arr {
			if bad(i) {
				require.Equal(t, "null", string(v))
			}
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		require.LessOrEqual(t, f.maxRun[id], 2)
	})
}

// MAP_MAX_ITEMS caps maxItems and is its default; maxItems 0 (or absent) takes the default;
// maxConcurrency must be an integer of at least 1 (each refusal a 400 naming it that stores
// nothing).
func TestMapNodeMaxItemsSettingAndBadOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *core.Config) { c.MapMaxItems = 50 })
	url := "http://127.0.0.1:9"
	e.register("pdf", "1", url, task("split", next("ocr")), task("ocr", next("merge")), task("merge"))
	put := func(extra map[string]any) response {
		return e.do("PUT", "/api/pipelines/pages", map[string]any{"entryTasks": []string{"split"}, "nodes": mapNode("ocr", "split", "/pages", extra)}, "")
	}
	var got protocol.Pipeline
	for _, c := range []struct {
		extra    map[string]any
		maxItems int
		conc     *int
	}{
		{nil, 50, nil},
		{map[string]any{"maxItems": 0}, 50, nil},
		{map[string]any{"maxItems": 50, "maxConcurrency": 1}, 50, ptr(1)},
		{map[string]any{"maxItems": 7, "maxConcurrency": 100}, 7, ptr(100)},
	} {
		r := put(c.extra)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		e.do("GET", "/api/pipelines/pages", nil, "").json(t, &got)
		require.Equal(t, &protocol.MapConfig{Over: "split", Items: "/pages", MaxItems: c.maxItems, MaxConcurrency: c.conc}, got.Tasks["ocr"].Map, "%v", c.extra)
	}
	for name, c := range map[string]struct {
		extra map[string]any
		code  string
	}{
		"maxItems above MAP_MAX_ITEMS": {map[string]any{"maxItems": 51}, "MAP_MAX_ITEMS_INVALID"},
		"maxItems negative":            {map[string]any{"maxItems": -1}, "MAP_MAX_ITEMS_INVALID"},
		"maxItems fractional":          {map[string]any{"maxItems": 1.5}, "MAP_MAX_ITEMS_INVALID"},
		"maxItems a string":            {map[string]any{"maxItems": "3"}, "MAP_MAX_ITEMS_INVALID"},
		"maxConcurrency zero":          {map[string]any{"maxConcurrency": 0}, "MAP_MAX_CONCURRENCY_INVALID"},
		"maxConcurrency negative":      {map[string]any{"maxConcurrency": -2}, "MAP_MAX_CONCURRENCY_INVALID"},
		"maxConcurrency fractional":    {map[string]any{"maxConcurrency": 2.5}, "MAP_MAX_CONCURRENCY_INVALID"},
		"maxConcurrency a string":      {map[string]any{"maxConcurrency": "3"}, "MAP_MAX_CONCURRENCY_INVALID"},
		"maxConcurrency too large":     {map[string]any{"maxConcurrency": 1 << 31}, "MAP_MAX_CONCURRENCY_INVALID"},
		"maxConcurrency null":          {map[string]any{"maxConcurrency": json.RawMessage("null"), "maxItems": 1.25}, "MAP_MAX_ITEMS_INVALID"},
	} {
		body := map[string]any{"entryTasks": []string{"split"}, "nodes": mapNode("ocr", "split", "/pages", c.extra)}
		r := e.do("PUT", "/api/pipelines/bad", body, "")
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", name, r.Body)
		require.Equal(t, c.code, r.errorBody(t).Code, "%s: %s", name, r.Body)
		// Registration refuses the same declaration.
		body["id"] = "bad"
		r = e.postReg("pdf2", map[string]any{"serviceId": "pdf2", "version": "1", "baseUrl": url,
			"tasks": []any{task("other")}, "pipelines": []any{body}})
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", name, r.Body)
		require.Equal(t, c.code, r.errorBody(t).Code, "%s: %s", name, r.Body)
	}
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/pipelines/bad", nil, "").Status)
	require.Zero(t, e.count(`SELECT count(*) FROM services WHERE id = 'pdf2'`))
}

// MAP_MAX_ITEMS is the bound at run time of a map node and of a spawn node that declare no
// maxItems (it is their maxItems): with MAP_MAX_ITEMS 3, a map over 4 items fails with
// MAP_TOO_LARGE before any item is made, a spawn of 4 entries is refused with 400
// SPAWN_TOO_MANY (nothing written, the run still running), and a map item may not grow its
// map of 3 past 3; exactly 3 items, or 3 entries, run and join.
func TestMapMaxItemsBoundsUndeclaredMaxItems(t *testing.T) {
	t.Parallel()
	small := func(c *core.Config) { c.MapMaxItems = 3 }
	// n is the number of items or entries a run's input asks for.
	n := func(e *env, d protocol.DispatchRequest) int {
		var in struct {
			N int `json:"n"`
		}
		if err := json.Unmarshal(e.itemInput(d), &in); err != nil {
			e.t.Errorf("input of %s: %v", d.RunID, err)
		}
		return in.N
	}
	refusal := func(status int, body []byte) string {
		var eb protocol.ErrorBody
		_ = json.Unmarshal(body, &eb)
		return fmt.Sprintf("%d %s: %s %v", status, eb.Code, eb.Error, eb.Details)
	}
	t.Run("map", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, small)
		w := newPWorker(t, e)
		mapPipeline(e, w, "pages", nil)
		w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n(e, d))) })
		var grow atomic.Value
		ocr := pageOCR(e, nil)
		w.on("ocr", func(d protocol.DispatchRequest) protocol.CallbackRequest {
			if n(e, d) == 0 {
				// One more item of a map of 3 items.
				cb := e.result(d, `{}`)
				cb.Spawn = []protocol.SpawnRequest{{TaskID: "ocr", Input: json.RawMessage(`{"n":3}`)}}
				grow.Store(refusal(w.callback(d, cb)))
			}
			return ocr(d)
		})

		over := e.trigger("pages", map[string]any{"input": map[string]int{"n": 4}})
		r := e.waitRun(over, "failed")
		status, code, total, _ := e.mapRowOf(over, "ocr")
		require.Equal(t, "failed", status)
		require.Equal(t, "MAP_TOO_LARGE", code)
		require.Nil(t, total, "no item was made")
		require.Equal(t, `map node ocr: items "/pages" has 4 elements; maxItems is 3`, *r.node("ocr").Error)
		require.Equal(t, "cancelled", r.node("merge").Status)
		require.Zero(t, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND item_index IS NOT NULL`, over))
		require.Empty(t, w.dispatchesOf("ocr"))

		at := e.trigger("pages", map[string]any{"input": map[string]int{"n": 3}})
		e.waitRun(at, "completed")
		status, code, total, _ = e.mapRowOf(at, "ocr")
		require.Equal(t, "completed", status)
		require.Empty(t, code)
		require.Equal(t, 3, *total)
		require.Len(t, w.dispatchesOf("ocr"), 3)
		merge := w.dispatchesOf("merge")
		require.Len(t, merge, 1)
		items := e.mergedArray(merge[0])
		require.Len(t, items, 3)
		for i, v := range items {
			require.JSONEq(t, fmt.Sprintf(`{"text":"page-%d"}`, i), string(v))
		}
		require.Equal(t, `400 SPAWN_TOO_MANY: spawn has 1 entries; map node "ocr" has 3 items and allows at most 3 in all (map.maxItems) map[field:spawn]`,
			grow.Load())
	})
	t.Run("spawn", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, small)
		w := newPWorker(t, e)
		spawnPipeline(e, w, "fan", nil)
		var got protocol.Pipeline
		e.do("GET", "/api/pipelines/fan", nil, "").json(t, &got)
		require.Equal(t, 3, got.Tasks["plan"].Spawn.MaxItems, "maxItems filled in with MAP_MAX_ITEMS")
		var refused atomic.Value
		w.on("plan", func(d protocol.DispatchRequest) protocol.CallbackRequest {
			rows := e.count(`SELECT count(*) FROM task_runs`)
			cb := e.result(d, `{"planned":4}`)
			cb.Spawn = spawnEntries(4)
			status, body := w.callback(d, cb)
			still := e.count(`SELECT count(*) FROM task_runs WHERE id = $1 AND status IN ('dispatching', 'running')`, d.RunID)
			refused.Store(fmt.Sprintf("%s; %d rows written, still under way %d", refusal(status, body), e.count(`SELECT count(*) FROM task_runs`)-rows, still))
			cb = e.result(d, `{"planned":3}`)
			cb.Spawn = spawnEntries(3)
			return cb
		})
		w.on("a", spawnedAnswer(e, nil))
		w.on("b", spawnedAnswer(e, nil))
		id := e.trigger("fan", map[string]any{"input": 1})
		e.waitRun(id, "completed")
		require.Equal(t, "400 SPAWN_TOO_MANY: spawn has 4 entries; at most 3 (MAP_MAX_ITEMS) map[field:spawn]; 0 rows written, still under way 1", refused.Load())
		_, status, _, total, left := e.spawnRow(id)
		require.Equal(t, "completed", status)
		require.Equal(t, 3, *total)
		require.Zero(t, *left)
		join := w.dispatchesOf("join")
		require.Len(t, join, 1)
		own, items := e.spawnDoc(join[0])
		require.JSONEq(t, `{"planned":3}`, string(own))
		require.Len(t, items, 3)
		require.Len(t, append(w.dispatchesOf("a"), w.dispatchesOf("b")...), 3)
	})
}

// GET /api/runs/{id} tells the items apart: each item has its itemIndex, the map row its
// itemsTotal and itemsLeft, and ordinary rows none of them; GET /api/task-runs/{id} of an item
// shows its index too.
func TestMapNodeItemIndexInRunAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	mapPipeline(e, w, "pages", nil)
	const n = 5
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
	w.on("ocr", pageOCR(e, nil))
	release := w.holdTask("merge")
	id := e.trigger("pages", map[string]any{"input": 1})
	w.waitUntil("merge dispatched", func() bool { return len(w.dispatchesOf("merge")) == 1 })

	type row struct {
		ID         string          `json:"id"`
		TaskID     string          `json:"taskId"`
		ItemIndex  json.RawMessage `json:"itemIndex"`
		ItemsTotal json.RawMessage `json:"itemsTotal"`
		ItemsLeft  json.RawMessage `json:"itemsLeft"`
	}
	var run struct {
		Tasks []row `json:"tasks"`
	}
	e.do("GET", "/api/runs/"+id, nil, "").json(t, &run)
	require.Len(t, run.Tasks, 3+n)
	seen := map[string]bool{}
	var item string
	for _, r := range run.Tasks {
		switch {
		case r.TaskID == "ocr" && r.ItemIndex != nil:
			require.Nil(t, r.ItemsTotal)
			require.Nil(t, r.ItemsLeft)
			seen[string(r.ItemIndex)] = true
			item = r.ID
		case r.TaskID == "ocr":
			require.JSONEq(t, "5", string(r.ItemsTotal), "the map row")
			require.JSONEq(t, "0", string(r.ItemsLeft))
		default:
			require.Nil(t, r.ItemIndex, r.TaskID)
			require.Nil(t, r.ItemsTotal, r.TaskID)
			require.Nil(t, r.ItemsLeft, r.TaskID)
		}
	}
	require.Equal(t, map[string]bool{"0": true, "1": true, "2": true, "3": true, "4": true}, seen)
	var one row
	e.do("GET", "/api/task-runs/"+item, nil, "").json(t, &one)
	require.NotNil(t, one.ItemIndex)
	release()
	e.waitRun(id, "completed")
}

// The bounded items of a paused pipeline wait like its other nodes: fanned out while the
// pipeline is paused, none is claimed; once resumed they run, within the bound.
func TestMapNodeMaxConcurrencyPausedPipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	f := newInFlight(time.Millisecond, nil)
	f.wrap(w)
	mapPipeline(e, w, "pages", map[string]any{"maxConcurrency": 2})
	const n = 10
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
	w.on("ocr", pageOCR(e, nil))
	release := w.holdTask("split")
	id := e.trigger("pages", map[string]any{"input": 1})
	w.waitUntil("split dispatched", func() bool { return len(w.dispatchesOf("split")) == 1 })
	r := e.do("POST", "/api/pipelines/pages/pause", map[string]any{}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	release()
	e.waitFor("the fan-out", func() bool {
		_, _, total, _ := e.mapRowOf(id, "ocr")
		return total != nil
	})
	for range 3 {
		_, err := e.orch.Process(context.Background())
		require.NoError(t, err)
	}
	require.Empty(t, w.dispatchesOf("ocr"), "a paused pipeline's bounded items wait")
	require.Equal(t, n, e.count(`SELECT count(*) FROM task_runs WHERE pipeline_run_id = $1 AND item_index IS NOT NULL AND status = 'pending'`, id))
	r = e.do("POST", "/api/pipelines/pages/resume", map[string]any{}, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	claimLoops(t, e)
	e.waitRun(id, "completed")
	require.Len(t, w.dispatchesOf("ocr"), n)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.LessOrEqual(t, f.maxRun[id], 2)
}
