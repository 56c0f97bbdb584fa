package worker_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/wiretest"
	"github.com/pipeweave/pipeweave/worker"
)

// recorder is a reverse proxy in front of the orchestrator that keeps the body of every
// request sent through it, by path.
type recorder struct {
	url    string
	mu     sync.Mutex
	bodies map[string][]byte
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	to, err := url.Parse(target)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(to)
	rec := &recorder{bodies: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec.mu.Lock()
		rec.bodies[r.Method+" "+r.URL.Path] = body
		rec.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rec.url = srv.URL
	return rec
}

// body is the body of the last request to method and path.
func (r *recorder) body(t *testing.T, method, path string) []byte {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.bodies[method+" "+path]
	require.True(t, ok, "no %s %s was sent", method, path)
	return b
}

// TestWireFormatOfWorkerCalls pins the JSON the SDK sends to the orchestrator (registration,
// idempotency check, progress, callback) to the literal fixtures of testdata/wire: a renamed
// field fails it.
func TestWireFormatOfWorkerCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := newRecorder(t, e.url)
	w := e.newWorker("wire", func(c *worker.Config) { c.OrchestratorURL, c.Version, c.CodeHash = rec.url, "1.0.0", "h-wire" })
	require.NoError(t, w.Register("render", worker.Options{
		AllowedNext: []string{"publish"}, Timeout: 2 * time.Minute, Retries: new(1), RetryBackoff: protocol.BackoffFixed,
		RetryDelay: 250 * time.Millisecond, MaxRetryDelay: time.Second, HeartbeatInterval: 30 * time.Second, Concurrency: 2,
		Priority: new(7), IdempotencyTTL: 10 * time.Minute, Description: "renders a page", CodeHash: "h-render",
		InputSchema:    []byte(`{"fields": [{"name": "page", "type": "number", "label": "Page"}]}`),
		IdempotencyKey: func(json.RawMessage, int) string { return "page-1" },
	}, func(ctx *worker.Context) (any, error) {
		if err := ctx.Progress(40, "page 4/10"); err != nil {
			return nil, err
		}
		if err := ctx.AddAsset("page", []byte("%PDF"), ""); err != nil {
			return nil, err
		}
		return worker.Result{Output: map[string]int{"pages": 4}, RunNext: []string{"publish"}}, nil
	}))
	require.NoError(t, w.Register("publish", worker.Options{}, func(*worker.Context) (any, error) { return nil, nil }))
	w.register(t)
	wiretest.Require(t, "register-request.json", rec.body(t, "POST", "/api/register"), wiretest.Subst{w.url: "<baseUrl>"})

	prun := e.trigger("wire", map[string]int{"page": 1})
	require.Equal(t, "completed", e.waitPipeline(prun).Status)
	ids := wiretest.Subst{e.pipelineRun(prun).runOf("render"): "<runId>"}
	wiretest.Require(t, "idempotency-check-request.json", rec.body(t, "POST", "/api/idempotency/check"), ids)
	wiretest.Require(t, "progress-request.json", rec.body(t, "POST", "/api/progress"), ids)
	for id := range ids {
		wiretest.Require(t, "callback-request.json", rec.body(t, "POST", "/api/callback/"+id), ids)
	}
}
