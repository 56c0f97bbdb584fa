package worker_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/worker"
)

// The Go SDK says at registration that it takes batches of dispatches; the orchestrator then
// sends the runs one claim took for the worker in one POST /tasks, and every run completes.
func TestDispatchesComeInBatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	var batches []int
	singles := 0
	w := e.newWorker("batched", func(c *worker.Config) {
		// A proxy in front of the worker counts the dispatches on each route.
		to, err := url.Parse(c.BaseURL)
		require.NoError(t, err)
		proxy := httputil.NewSingleHostReverseProxy(to)
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			require.NoError(t, err)
			r.Body = io.NopCloser(bytes.NewReader(body))
			mu.Lock()
			switch {
			case r.URL.Path == protocol.DispatchBatchPath:
				var req protocol.DispatchBatchRequest
				require.NoError(t, json.Unmarshal(body, &req))
				batches = append(batches, len(req.Dispatches))
			case strings.HasPrefix(r.URL.Path, "/tasks/"):
				singles++
			}
			mu.Unlock()
			proxy.ServeHTTP(rw, r)
		}))
		t.Cleanup(srv.Close)
		c.BaseURL = srv.URL
	})
	require.NoError(t, w.Register("noop", worker.Options{}, func(c *worker.Context) (any, error) {
		var in map[string]int
		if err := c.Decode(&in); err != nil {
			return nil, err
		}
		return in, nil
	}))
	w.register(t)
	const n = 20
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"taskId": "noop", "input": map[string]int{"i": i}}
	}
	r := e.do("POST", "/api/queue/batch", map[string]any{"tasks": tasks})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	var out struct {
		Results []struct {
			RunID string `json:"runId"`
		} `json:"results"`
	}
	r.json(t, &out)
	require.Len(t, out.Results, n)
	for i, res := range out.Results {
		e.waitStatus(res.RunID, protocol.StatusCompleted)
		var got map[string]any
		e.do("GET", "/api/storage/"+protocol.OutputPath(res.RunID), nil).json(t, &got)
		require.Equal(t, map[string]any{"i": float64(i)}, got["content"])
	}
	mu.Lock()
	defer mu.Unlock()
	total := singles
	for _, b := range batches {
		total += b
	}
	require.Equal(t, n, total, "each run dispatched once")
	require.NotEmpty(t, batches)
	require.Greater(t, batches[0], 1, "the first claim's runs went together")
}

// What the batch route refuses as a whole (400, 413), and what it refuses dispatch by dispatch
// (401 without a valid run token, as the single route would): nothing starts.
func TestDispatchBatchBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.newWorker("batchbad")
	require.NoError(t, w.Register("noop", worker.Options{}, func(*worker.Context) (any, error) { return nil, nil }))
	h := w.Handler()
	post := func(body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, protocol.DispatchBatchPath, strings.NewReader(body)))
		return rec
	}
	for name, tc := range map[string]struct {
		body   string
		status int
		code   string
	}{
		"not JSON":      {`{"dispatches": [`, http.StatusBadRequest, "MALFORMED_JSON"},
		"empty":         {`{"dispatches": []}`, http.StatusBadRequest, "INVALID_BATCH"},
		"too many":      {`{"dispatches": [` + strings.Repeat(`{"runId":"r"},`, 256) + `{"runId":"r"}]}`, http.StatusBadRequest, "INVALID_BATCH"},
		"too large":     {`{"dispatches": [{"runId":"` + strings.Repeat("x", 33<<20) + `"}]}`, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE"},
		"a wrong shape": {`{"dispatches": {"runId": "r"}}`, http.StatusBadRequest, "MALFORMED_JSON"},
	} {
		rec := post(tc.body)
		require.Equal(t, tc.status, rec.Code, name)
		var body protocol.ErrorBody
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), name)
		require.Equal(t, tc.code, body.Code, name)
	}

	rec := post(`{"dispatches": [{"runId": "a", "taskId": "noop"}, {"runId": "b", "taskId": "noop", "storageToken": "forged"}]}`)
	require.Equal(t, http.StatusOK, rec.Code)
	var resp protocol.DispatchBatchResponse
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &resp))
	require.Equal(t, []protocol.DispatchBatchResult{
		{RunID: "a", HTTPStatus: http.StatusUnauthorized, Code: "UNAUTHORIZED", Error: "the dispatch carries no storageToken"},
		{RunID: "b", HTTPStatus: http.StatusUnauthorized, Code: "UNAUTHORIZED", Error: "the run token is not valid"},
	}, resp.Results)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	var health struct {
		Running int `json:"running"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &health))
	require.Zero(t, health.Running, "nothing started")
}
