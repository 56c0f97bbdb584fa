package worker_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/worker"
)

// traceLog records the traceparent header of the requests a handler serves, by path.
type traceLog struct {
	mu   sync.Mutex
	seen map[string][]string
	// beat is signalled (without blocking) for each heartbeat.
	beat chan struct{}
}

func newTraceLog() *traceLog {
	return &traceLog{seen: map[string][]string{}, beat: make(chan struct{}, 1)}
}

func (l *traceLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if strings.HasPrefix(path, "/api/callback/") {
			path = "/api/callback"
		}
		l.mu.Lock()
		l.seen[path] = append(l.seen[path], r.Header.Get("traceparent"))
		l.mu.Unlock()
		if path == "/api/heartbeat" {
			select {
			case l.beat <- struct{}{}:
			default:
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (l *traceLog) get(path string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen[path]...)
}

// traceparentIDs splits a W3C traceparent "00-<trace id>-<span id>-<flags>".
func traceparentIDs(t *testing.T, traceparent string) (traceID, spanID string) {
	t.Helper()
	parts := strings.Split(traceparent, "-")
	require.Len(t, parts, 4, "traceparent %q", traceparent)
	require.Equal(t, "00", parts[0])
	return parts[1], parts[2]
}

// The SDK continues the trace of a dispatch: the handler's context carries the dispatch's span
// context, and the attempt's progress reports, heartbeats and callback carry a traceparent of
// the same trace. (No global tracer provider is set: the SDK's task span does not record and
// keeps the dispatch's span context.)
func TestTraceContextFromDispatchToCallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	toOrch, toWorker := newTraceLog(), newTraceLog()
	orch := httptest.NewServer(toOrch.wrap(e.orch.Handler()))
	t.Cleanup(orch.Close)

	srv := httptest.NewUnstartedServer(nil)
	w, err := worker.New(worker.Config{OrchestratorURL: orch.URL, ServiceID: "traced", Version: "1", SecretKey: testSecret,
		BaseURL: "http://" + srv.Listener.Addr().String(), TempDir: t.TempDir(), Logger: quietLogger()})
	require.NoError(t, err)
	handlerSpan := make(chan trace.SpanContext, 1)
	require.NoError(t, w.Register("job", worker.Options{HeartbeatInterval: 20 * time.Millisecond}, func(c *worker.Context) (any, error) {
		handlerSpan <- trace.SpanContextFromContext(c)
		if err := c.Progress(50, "half way"); err != nil {
			return nil, err
		}
		// Wait for a heartbeat of the attempt's own ticker.
		select {
		case <-toOrch.beat:
		case <-c.Done():
			return nil, c.Err()
		}
		return map[string]bool{"ok": true}, nil
	}))
	srv.Config.Handler = toWorker.wrap(w.Handler())
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(w.Wait)
	_, err = w.RegisterWithOrchestrator(t.Context())
	require.NoError(t, err)
	require.Equal(t, []string{""}, toOrch.get("/api/register"), "registration belongs to no trace")

	const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	r := do(t, "POST", orch.URL+"/api/queue/task", map[string]any{"taskId": "job", "input": 1},
		http.Header{"Traceparent": {caller}})
	require.Equal(t, http.StatusCreated, r.Status, "enqueue: %s", r.Body)
	var out struct {
		RunID string `json:"runId"`
	}
	r.json(t, &out)
	// Polled without Process: no sweep may end the attempt between its quick heartbeats.
	deadline := time.Now().Add(30 * time.Second)
	for e.run(out.RunID).Status != "completed" {
		require.True(t, time.Now().Before(deadline), "timed out waiting for run %s to complete", out.RunID)
		time.Sleep(10 * time.Millisecond)
	}
	w.Wait()

	dispatched := toWorker.get("/tasks/job")
	require.Len(t, dispatched, 1)
	traceID, spanID := traceparentIDs(t, dispatched[0])
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", traceID, "the run continues the enqueue's trace")

	sc := recv(t, handlerSpan, "the handler's span context")
	require.True(t, sc.IsValid())
	require.Equal(t, traceID, sc.TraceID().String(), "the handler's context is in the dispatch's trace")
	require.Equal(t, spanID, sc.SpanID().String(), "the handler's context carries the dispatch's span")
	require.True(t, sc.IsSampled())

	for _, path := range []string{"/api/progress", "/api/heartbeat", "/api/callback"} {
		sent := toOrch.get(path)
		require.NotEmpty(t, sent, path)
		for _, tp := range sent {
			got, _ := traceparentIDs(t, tp)
			require.Equal(t, traceID, got, "%s carries the attempt's trace", path)
		}
	}
}

// A dispatch without a traceparent starts no trace: the handler's context has no span context
// and the worker's calls carry none.
func TestNoTraceContextWithoutTraceparent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	toOrch := newTraceLog()
	orch := httptest.NewServer(toOrch.wrap(e.orch.Handler()))
	t.Cleanup(orch.Close)
	tw := e.newWorker("untraced", func(c *worker.Config) {
		c.OrchestratorURL = orch.URL
		c.Logger = slog.New(slog.DiscardHandler)
	})
	handlerSpan := make(chan trace.SpanContext, 1)
	require.NoError(t, tw.Register("job", worker.Options{}, func(c *worker.Context) (any, error) {
		handlerSpan <- trace.SpanContextFromContext(c)
		return nil, nil
	}))
	tw.register(t)
	id := e.enqueue("job", 1)
	e.waitStatus(id, "completed")
	tw.Wait()
	require.False(t, recv(t, handlerSpan, "the handler's span context").IsValid())
	require.Equal(t, []string{""}, toOrch.get("/api/callback"))
}
