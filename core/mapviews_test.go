package core_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// mapState is the map node task of run id as GET /api/runs/{id}?items=false shows it, with the
// task runs that answer lists.
func (e *env) mapState(id, task string) (protocol.MapNodeState, []protocol.PipelineRunTask) {
	e.t.Helper()
	var run protocol.PipelineRun
	r := e.do("GET", "/api/runs/"+id+"?items=false", nil, "")
	require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
	r.json(e.t, &run)
	for _, m := range run.Maps {
		if m.TaskID == task {
			return m, run.Tasks
		}
	}
	e.t.Fatalf("run %s shows no map node %s: %+v", id, task, run.Maps)
	return protocol.MapNodeState{}, nil
}

// mapItems lists every item of map node task of run id, page by page (limit per page), with
// the query extra.
func (e *env) mapItems(id, task string, limit int, extra string) []protocol.MapItem {
	e.t.Helper()
	var all []protocol.MapItem
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(e.t, pages, 100, "paging ends")
		var p protocol.Page[protocol.MapItem]
		r := e.do("GET", fmt.Sprintf("/api/runs/%s/maps/%s/items?limit=%d&cursor=%s%s", id, task, limit, cursor, extra), nil, "")
		require.Equal(e.t, http.StatusOK, r.Status, string(r.Body))
		r.json(e.t, &p)
		require.LessOrEqual(e.t, len(p.Items), limit)
		all = append(all, p.Items...)
		if p.NextCursor == "" {
			return all
		}
		cursor = p.NextCursor
	}
}

// A map node's views: the dry run marks it with its declaration and an unknown item count; a
// run shows its items counted by state (GET /api/runs/{id} maps) while they run, items=false
// leaves the item rows out, and the items page lists them in index order, by state.
func TestMapNodeViews(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newPWorker(t, e)
	mapPipeline(e, w, "pages", nil)

	var plan protocol.DryRun
	r := e.do("POST", "/api/pipelines/pages/dry-run", nil, "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r.json(t, &plan)
	require.Len(t, plan.ExecutionPlan, 3)
	require.Nil(t, plan.ExecutionPlan[0].Nodes, "split is an ordinary task")
	require.Equal(t, map[string]protocol.PlanNode{"ocr": {Type: "map", Map: &protocol.MapConfig{Over: "split", Items: "/pages", MaxItems: 10_000},
		ItemCount: protocol.ItemCountUnknown}}, plan.ExecutionPlan[1].Nodes)
	require.Contains(t, string(r.Body), `"itemCount":"unknown"`)

	// 12 pages: 0-4 complete, 5 and 6 fail, 7-11 hold until released.
	const n = 12
	release := make(chan struct{})
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest { return e.result(d, pagesOutput(n)) })
	ocr := pageOCR(e, func(i int) bool { return i == 5 || i == 6 })
	w.on("ocr", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		var in struct {
			N int `json:"n"`
		}
		if err := json.Unmarshal(e.itemInput(d), &in); err != nil {
			t.Errorf("item input of %s: %v", d.RunID, err)
		}
		if in.N >= 7 {
			<-release
		}
		return ocr(d)
	})
	id := e.trigger("pages", map[string]any{"input": 1, "failureMode": "continue"})
	var st protocol.MapNodeState
	e.waitMoved("7 items resolved and 5 running", func() bool {
		st, _ = e.mapState(id, "ocr")
		return st.Counts["completed"] == 5 && st.Counts["failed"] == 2 && st.Counts["running"] == 5
	})
	require.Equal(t, "waiting", string(st.Status), "the map row waits for its items")
	require.NotEmpty(t, st.MapRunID)
	require.Equal(t, protocol.MapConfig{Over: "split", Items: "/pages", MaxItems: 10_000}, st.Map)
	require.NotNil(t, st.ItemsTotal)
	require.Equal(t, n, *st.ItemsTotal)
	require.Equal(t, map[protocol.TaskRunStatus]int{"pending": 0, "dispatching": 0, "running": 5, "completed": 5, "failed": 2, "cancelled": 0}, st.Counts)

	// items=false: the map row and the other nodes, no item row; the default lists every row.
	_, tasks := e.mapState(id, "ocr")
	var ids []string
	for _, tr := range tasks {
		ids = append(ids, tr.TaskID)
	}
	slices.Sort(ids)
	require.Equal(t, []string{"merge", "ocr", "split"}, ids)
	var full protocol.PipelineRun
	e.do("GET", "/api/runs/"+id, nil, "").json(t, &full)
	require.Len(t, full.Tasks, 3+n)
	require.Len(t, full.Maps, 1)

	// Pages of 5 in index order, each with its own task run; a filter by state.
	items := e.mapItems(id, "ocr", 5, "")
	require.Len(t, items, n)
	for i, it := range items {
		require.Equal(t, i, it.ItemIndex)
		require.NotEqual(t, st.MapRunID, it.RunID)
		var tr protocol.TaskRun
		e.do("GET", "/api/task-runs/"+it.RunID, nil, "").json(t, &tr)
		require.Equal(t, "ocr", tr.TaskID)
		require.Equal(t, id, tr.PipelineRunID)
		require.Equal(t, tr.Status, it.Status)
	}
	failed := e.mapItems(id, "ocr", 1, "&status=failed")
	require.Len(t, failed, 2)
	require.Equal(t, []int{5, 6}, []int{failed[0].ItemIndex, failed[1].ItemIndex})
	require.Equal(t, "BOOM", *failed[0].ErrorCode)
	require.Contains(t, *failed[0].Error, "page 5 unreadable")
	require.Empty(t, e.mapItems(id, "ocr", 500, "&status=skipped"))
	var after protocol.Page[protocol.MapItem]
	e.do("GET", "/api/runs/"+id+"/maps/ocr/items?cursor=9", nil, "").json(t, &after)
	require.Len(t, after.Items, 2, "after item 9: 10 and 11")
	require.Equal(t, 10, after.Items[0].ItemIndex)
	require.Empty(t, after.NextCursor)

	// Not a map node, an unknown run.
	r = e.do("GET", "/api/runs/"+id+"/maps/merge/items", nil, "")
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "MAP_NODE_NOT_FOUND", r.errorBody(t).Code)
	r = e.do("GET", "/api/runs/prun_nope/maps/ocr/items", nil, "")
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "PIPELINE_RUN_NOT_FOUND", r.errorBody(t).Code)

	close(release)
	e.waitRun(id, "failed")
	st, _ = e.mapState(id, "ocr")
	require.Equal(t, "completed", string(st.Status))
	require.Equal(t, 10, st.Counts["completed"])
	require.Equal(t, 2, st.Counts["failed"])
	require.Zero(t, st.Counts["running"])

	// A run of a pipeline without map nodes shows none, and before its over task completes a
	// map node has no items yet.
	e.register("plain", "1", w.URL(), task("solo"))
	plain := e.trigger("plain", map[string]any{"input": 1})
	e.waitRun(plain, "completed")
	r = e.do("GET", "/api/runs/"+plain+"?items=false", nil, "")
	require.NotContains(t, string(r.Body), `"maps"`)
	r = e.do("GET", "/api/runs/"+plain+"/maps/solo/items", nil, "")
	require.Equal(t, "MAP_NODE_NOT_FOUND", r.errorBody(t).Code)

	hold := make(chan struct{})
	w.on("split", func(d protocol.DispatchRequest) protocol.CallbackRequest {
		<-hold
		return e.result(d, pagesOutput(2))
	})
	early := e.trigger("pages", map[string]any{"input": 1})
	st, _ = e.mapState(early, "ocr")
	require.Nil(t, st.ItemsTotal, "no items before split completed")
	require.Equal(t, "waiting", string(st.Status))
	require.Zero(t, st.Counts["pending"]+st.Counts["completed"])
	close(hold)
	e.waitRun(early, "completed")
}
