// Package fakeworker is a worker that speaks the dispatch protocol without the SDK, for the
// benchmarks, the cold-start tool and the tests that need exact control over each answer: it
// serves POST {baseUrl}/tasks/{taskId} on loopback, answers each dispatch with the status a hook
// picks (202 by default), can record the dispatches, and calls back through the orchestrator's
// API (package apiclient) when told.
package fakeworker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// Options change what a Worker does with a dispatch.
type Options struct {
	// Answer picks the HTTP status of the answer to a dispatch (default 202).
	Answer func(d protocol.DispatchRequest) int
	// After runs in a goroutine of its own after a dispatch was answered with a 2xx status.
	After func(d protocol.DispatchRequest)
	// Record keeps every dispatch (and its body) for Dispatches, Bodies and Take.
	Record bool
}

// Worker is a running fake worker.
type Worker struct {
	url  string
	orch *apiclient.Client
	srv  *http.Server
	opts Options

	mu         sync.Mutex
	dispatches []protocol.DispatchRequest
	bodies     [][]byte
	after      sync.WaitGroup
}

// New makes a fake worker that calls back to orch, to serve with Handler (Start serves it).
func New(orch *apiclient.Client, opts Options) *Worker {
	return &Worker{orch: orch, opts: opts}
}

// Start serves a fake worker on a free port of 127.0.0.1 that calls back to orch.
func Start(orch *apiclient.Client, opts Options) (*Worker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the fake worker: %w", err)
	}
	w := New(orch, opts)
	w.url = "http://" + ln.Addr().String()
	w.srv = &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = w.srv.Serve(ln) }()
	return w, nil
}

// Handler serves the dispatches: POST /tasks/{taskId}.
func (w *Worker) Handler() http.Handler { return http.HandlerFunc(w.serve) }

// URL is the base URL, the baseUrl to register, of a worker made by Start.
func (w *Worker) URL() string { return w.url }

func (w *Worker) serve(rw http.ResponseWriter, r *http.Request) {
	var d protocol.DispatchRequest
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(body, &d)
	}
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	if r.URL.Path != "/tasks/"+d.TaskID {
		http.Error(rw, "wrong path "+r.URL.Path, http.StatusBadRequest)
		return
	}
	if w.opts.Record {
		w.mu.Lock()
		w.dispatches = append(w.dispatches, d)
		w.bodies = append(w.bodies, body)
		w.mu.Unlock()
	}
	status := http.StatusAccepted
	if w.opts.Answer != nil {
		status = w.opts.Answer(d)
	}
	after := w.opts.After != nil && status < 300
	if after {
		w.after.Add(1)
	}
	rw.WriteHeader(status)
	if after {
		go func() {
			defer w.after.Done()
			w.opts.After(d)
		}()
	}
}

// Dispatches are the dispatches recorded so far, in the order they came.
func (w *Worker) Dispatches() []protocol.DispatchRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]protocol.DispatchRequest(nil), w.dispatches...)
}

// Bodies are the raw bodies of the dispatches recorded so far, in the order of Dispatches.
func (w *Worker) Bodies() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.bodies...)
}

// Take returns the dispatches recorded so far and forgets them.
func (w *Worker) Take() []protocol.DispatchRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.dispatches
	w.dispatches, w.bodies = nil, nil
	return d
}

// Callback sends body as the callback of dispatch d, with d's run token, and returns the
// orchestrator's answer.
func (w *Worker) Callback(ctx context.Context, d protocol.DispatchRequest, body protocol.CallbackRequest) (json.RawMessage, error) {
	return w.orch.WithToken(d.StorageToken).Post(ctx, "/api/callback/"+d.RunID, body, nil)
}

// Success is the callback of a successful attempt of d, with a small output.
func Success(d protocol.DispatchRequest) protocol.CallbackRequest {
	return protocol.CallbackRequest{Status: protocol.CallbackSuccess, OutputPath: protocol.OutputPath(d.RunID), OutputSize: 2}
}

// Wait waits for the After hooks that run.
func (w *Worker) Wait() { w.after.Wait() }

// Close stops serving a worker made by Start; After hooks that run go on (Wait waits for
// them).
func (w *Worker) Close() {
	if w.srv != nil {
		_ = w.srv.Close()
	}
}
