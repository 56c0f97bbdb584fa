package core_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// A callback's outputPath, logsPath and asset paths must be storage keys under runs/{runId}/;
// else 400 INVALID_OUTPUT_PATH naming the field, nothing is written, and a corrected callback
// is then applied.
func TestCallbackPathsUnderRunPrefix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"))
	first := e.enqueue(map[string]any{"taskId": "t", "input": map[string]any{"n": 1}})
	second := e.enqueue(map[string]any{"taskId": "t", "input": map[string]any{"n": 2}})
	e.process()
	w.waitDispatches(2)
	var d, other protocol.DispatchRequest
	for _, x := range w.all() {
		if x.RunID == first.RunID {
			d = x
		} else {
			other = x
		}
	}
	require.Equal(t, second.RunID, other.RunID)
	own := "runs/" + d.RunID + "/"
	bad := []struct {
		name  string
		cb    protocol.CallbackRequest
		field string
	}{
		{"traversal", protocol.CallbackRequest{OutputPath: "../../etc/passwd"}, "outputPath"},
		{"traversal inside the prefix", protocol.CallbackRequest{OutputPath: own + "../../x/output.json"}, "outputPath"},
		{"absolute", protocol.CallbackRequest{OutputPath: "/etc/passwd"}, "outputPath"},
		{"another run's prefix", protocol.CallbackRequest{OutputPath: protocol.OutputPath(other.RunID)}, "outputPath"},
		{"another top-level prefix", protocol.CallbackRequest{OutputPath: "standalone/" + d.RunID + "/input.json"}, "outputPath"},
		{"prefix without the slash", protocol.CallbackRequest{OutputPath: "runs/" + d.RunID + "x/output.json"}, "outputPath"},
		{"logs elsewhere", protocol.CallbackRequest{OutputPath: own + "output.json", LogsPath: protocol.LogsPath(other.RunID)}, "logsPath"},
		{"asset elsewhere", protocol.CallbackRequest{OutputPath: own + "output.json",
			Assets: map[string]protocol.Asset{"img": {Path: "../../etc/passwd", Size: 1, Type: "binary"}}}, "assets.img.path"},
		{"asset without a path", protocol.CallbackRequest{Assets: map[string]protocol.Asset{"img": {Size: 1, Type: "binary"}}}, "assets.img.path"},
	}
	for _, c := range bad {
		c.cb.Status = protocol.CallbackSuccess
		status, body := w.callback(d, c.cb)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", c.name, body)
		r := response{Status: status, Body: body}
		eb := r.errorBody(t)
		require.Equal(t, "INVALID_OUTPUT_PATH", eb.Code, c.name)
		require.Contains(t, eb.Error, c.field, c.name)
		require.Equal(t, map[string]any{"field": c.field}, eb.Details, c.name)
		require.Equal(t, protocol.StatusRunning, e.run(d.RunID).Status, "%s: nothing written, the run still runs", c.name)
	}
	// The worker fixes its paths and sends again: applied.
	status, body := w.callback(d, protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: own + "output.json", OutputSize: 2,
		LogsPath: own + "logs.jsonl", Assets: map[string]protocol.Asset{"img": {Path: own + "assets/img", Size: 1, Type: "binary"}}})
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Equal(t, protocol.StatusCompleted, e.run(d.RunID).Status)
	// A failed callback carries no paths to check.
	status, body = w.callback(other, protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: "boom", Retryable: ptr(false),
		OutputPath: "../../etc/passwd"})
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Equal(t, protocol.StatusFailed, e.run(other.RunID).Status)
}

// A result reused through POST /api/idempotency/check names the paths of the run that produced
// it: exactly those are accepted, nothing else under that run's prefix, and no run's paths
// that were not recorded under an idempotency key of the task.
func TestCallbackPathsOfCachedResult(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWorker(t, e.url)
	e.register("svc", "1", w.URL(), task("t"), task("u"))
	src := e.enqueue(map[string]any{"taskId": "t", "input": map[string]any{"n": 1}})
	plain := e.enqueue(map[string]any{"taskId": "t", "input": map[string]any{"n": 2}})
	foreign := e.enqueue(map[string]any{"taskId": "u", "input": map[string]any{"n": 3}})
	e.process()
	w.waitDispatches(3)
	byID := map[string]protocol.DispatchRequest{}
	for _, x := range w.all() {
		byID[x.RunID] = x
	}
	srcAssets := map[string]protocol.Asset{"img": {Path: protocol.AssetPath(src.RunID, "img"), Size: 1, Type: "binary"}}
	status, body := w.callback(byID[src.RunID], protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(src.RunID),
		OutputSize: 2, LogsPath: protocol.LogsPath(src.RunID), Assets: srcAssets, IdempotencyKey: "k"})
	require.Equal(t, http.StatusOK, status, "%s", body)
	status, body = w.callback(byID[plain.RunID], success(byID[plain.RunID]))
	require.Equal(t, http.StatusOK, status, "%s", body)
	// Task u's run, recorded under the same key of its own task: not a source for task t.
	status, body = w.callback(byID[foreign.RunID], protocol.CallbackRequest{Status: protocol.CallbackSuccess,
		OutputPath: protocol.OutputPath(foreign.RunID), OutputSize: 2, IdempotencyKey: "k"})
	require.Equal(t, http.StatusOK, status, "%s", body)

	reuse := e.enqueue(map[string]any{"taskId": "t", "input": map[string]any{"n": 4}})
	e.process()
	w.waitDispatches(4)
	var d protocol.DispatchRequest
	for _, x := range w.all() {
		if x.RunID == reuse.RunID {
			d = x
		}
	}
	status, body, err := post(e.url+"/api/idempotency/check", protocol.IdempotencyCheckRequest{RunID: d.RunID, Key: "k"}, d.StorageToken)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "%s", body)
	var hit protocol.IdempotencyCheckResponse
	response{Status: status, Body: body}.json(t, &hit)
	require.True(t, hit.Hit)
	require.Equal(t, src.RunID, hit.RunID)

	for name, cb := range map[string]protocol.CallbackRequest{
		"another path under the cached run's prefix": {OutputPath: "runs/" + src.RunID + "/other.json"},
		"a run not recorded under a key":             {OutputPath: protocol.OutputPath(plain.RunID)},
		"a run of another task recorded under a key": {OutputPath: protocol.OutputPath(foreign.RunID)},
		"a cached asset path that was not stored":    {OutputPath: hit.OutputPath, Assets: map[string]protocol.Asset{"x": {Path: protocol.AssetPath(src.RunID, "x")}}},
	} {
		cb.Status = protocol.CallbackSuccess
		status, body = w.callback(d, cb)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", name, body)
		require.Contains(t, string(body), "INVALID_OUTPUT_PATH", name)
	}
	// Exactly the cached result, as the Go SDK reports it: accepted.
	status, body = w.callback(d, protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: hit.OutputPath,
		OutputSize: hit.OutputSize, Assets: hit.Assets, SelectedNext: hit.SelectedNext})
	require.Equal(t, http.StatusOK, status, "%s", body)
	r := e.run(d.RunID)
	require.Equal(t, protocol.StatusCompleted, r.Status)
	require.Equal(t, protocol.OutputPath(src.RunID), *r.OutputPath)
}
