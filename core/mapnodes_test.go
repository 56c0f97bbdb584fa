package core_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
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
		"maxConcurrency":        {mapNode("ocr", "split", "/pages", map[string]any{"maxConcurrency": 4}), nil, "MAP_OPTION_UNSUPPORTED"},
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

	// Fan-out is not built yet: a pipeline with a map node is refused, not run as a plain DAG.
	r = e.do("POST", "/api/pipelines/pages/trigger", map[string]any{"input": 1}, "")
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "MAP_NOT_SUPPORTED", r.errorBody(t).Code)
	require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM pipeline_runs").Scan(&n))
	require.Zero(t, n)

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
