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
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/worker"
)

// callbackProxy stands between the worker and the orchestrator: it counts the callbacks the
// worker sends on each route, can hold the first single callbacks (as many as the worker sends
// at once) until released, and can answer the batch route 404, as an orchestrator without it
// does.
type callbackProxy struct {
	url string

	mu      sync.Mutex
	singles int
	batches []int // the callbacks of each batch request
	hold    chan struct{}
	held    int
	no404   bool
}

func newCallbackProxy(t *testing.T, target string, hold, batchRoute bool) *callbackProxy {
	t.Helper()
	to, err := url.Parse(target)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(to)
	p := &callbackProxy{no404: batchRoute}
	if hold {
		p.hold = make(chan struct{})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/callback/"):
			p.mu.Lock()
			p.singles++
			wait := p.hold != nil && p.held < worker.MaxCallbackRequests()
			if wait {
				p.held++
			}
			p.mu.Unlock()
			if wait {
				<-p.hold
			}
		case r.URL.Path == protocol.CallbackBatchPath:
			var req protocol.CallbackBatchRequest
			if err := json.Unmarshal(body, &req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			p.mu.Lock()
			p.batches = append(p.batches, len(req.Callbacks))
			p.mu.Unlock()
			if !p.no404 {
				http.NotFound(w, r)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *callbackProxy) counts() (int, []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.singles, append([]int(nil), p.batches...)
}

// runHeld registers a no-op task with a worker whose calls go through p (its first single
// callbacks held), runs n runs of it, each dispatched at once, and waits until the other
// callbacks queue behind the held ones; then it releases those and waits until every run
// completed. It returns the runs' ids and the worker.
func runHeld(t *testing.T, e *env, p *callbackProxy, service string, n int) ([]string, *testWorker) {
	t.Helper()
	w := e.newWorker(service, func(c *worker.Config) { c.OrchestratorURL = p.url })
	w.SetCallbackStall(time.Hour) // the queued callbacks wait for the held ones, however slow the machine
	require.NoError(t, w.Register("noop", worker.Options{}, func(*worker.Context) (any, error) {
		return map[string]int{"ok": 1}, nil
	}))
	w.register(t)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.enqueue("noop", map[string]int{"i": i})
	}
	e.waitFor("the other callbacks to queue", func() bool { return w.QueuedCallbacks() == n-worker.MaxCallbackRequests() })
	close(p.hold)
	for _, id := range ids {
		e.waitStatus(id, protocol.StatusCompleted)
	}
	return ids, w
}

// Callbacks that end while the worker's callback requests are in flight (as many as it sends
// at once) wait for one to end and then go in one batch request; a lone one goes alone on its
// own route. Every run completes.
func TestCallbacksBatchWhileRequestsAreInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newCallbackProxy(t, e.url, true, true)
	const n = 12
	alone := worker.MaxCallbackRequests()
	// The first callbacks are held at the proxy; the others queue behind them.
	ids, _ := runHeld(t, e, p, "batcher", n)
	singles, batches := p.counts()
	require.Equal(t, alone, singles, "the first callbacks went alone")
	require.Equal(t, []int{n - alone}, batches, "the others went in one request")
	var out map[string]any
	e.do("GET", "/api/storage/"+protocol.OutputPath(ids[n-1]), nil).json(t, &out)
	require.Equal(t, map[string]any{"ok": float64(1)}, out["content"])

	// Alone again: a single callback, no batch.
	id := e.enqueue("noop", map[string]int{"i": n})
	e.waitStatus(id, protocol.StatusCompleted)
	singles, batches = p.counts()
	require.Equal(t, alone+1, singles)
	require.Len(t, batches, 1)
}

// Callbacks queued behind requests that hang (an instance that stopped answering) do not wait
// for them: once they waited the stall, they go in a request of their own, and their runs
// complete while the first two are still held.
func TestCallbacksDoNotWaitForStalledRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newCallbackProxy(t, e.url, true, true)
	w := e.newWorker("stalled", func(c *worker.Config) { c.OrchestratorURL = p.url })
	release := sync.OnceFunc(func() { close(p.hold) })
	t.Cleanup(release) // before the worker's cleanup waits for its attempts
	w.SetCallbackStall(20 * time.Millisecond)
	require.NoError(t, w.Register("noop", worker.Options{}, func(*worker.Context) (any, error) {
		return map[string]int{"ok": 1}, nil
	}))
	w.register(t)
	alone := worker.MaxCallbackRequests()
	first := make([]string, alone)
	for i := range first {
		first[i] = e.enqueue("noop", map[string]int{"i": i})
	}
	e.waitFor("the first callbacks held", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.held == alone })
	const n = 10
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.enqueue("noop", map[string]int{"i": alone + i})
	}
	for _, id := range ids {
		e.waitStatus(id, protocol.StatusCompleted)
	}
	singles, batches := p.counts()
	for _, b := range batches {
		singles += b
	}
	require.Equal(t, alone+n, singles, "each callback reached the orchestrator once")
	for _, id := range first {
		require.NotEqual(t, protocol.StatusCompleted, e.run(id).Status, "held")
	}
	release()
	for _, id := range first {
		e.waitStatus(id, protocol.StatusCompleted)
	}
}

// An orchestrator that answers the batch route 404 gets each of the batch's callbacks alone,
// and no batch after that.
func TestCallbacksFallBackWithoutTheBatchRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newCallbackProxy(t, e.url, true, false)
	const n = 6
	alone := worker.MaxCallbackRequests()
	_, w := runHeld(t, e, p, "nobatch", n)
	singles, batches := p.counts()
	require.Equal(t, []int{n - alone}, batches, "one batch was tried")
	require.Equal(t, n, singles, "then each callback went alone")

	// With the first of more callbacks held again, the others do not queue behind them: they
	// reach the proxy alone while those are held.
	p.mu.Lock()
	p.hold, p.held = make(chan struct{}), 0
	p.mu.Unlock()
	more := make([]string, 4)
	for i := range more {
		more[i] = e.enqueue("noop", map[string]int{"i": n + i})
	}
	e.waitFor("every callback at the proxy", func() bool { s, _ := p.counts(); return s == n+len(more) })
	require.Zero(t, w.QueuedCallbacks())
	close(p.hold)
	for _, id := range more {
		e.waitStatus(id, protocol.StatusCompleted)
	}
	singles, batches = p.counts()
	require.Len(t, batches, 1)
	require.Equal(t, n+len(more), singles)
}
