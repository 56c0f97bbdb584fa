package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/token"
)

// maxDispatchBytes caps a dispatch body.
const maxDispatchBytes = 8 << 20

// dispatchBatchMax is how many dispatches the worker takes in one POST /tasks (it says so at
// registration), and maxDispatchBatchBytes caps that request's body (the orchestrator cuts its
// batches at 4 MiB).
const (
	dispatchBatchMax      = 256
	maxDispatchBatchBytes = 32 << 20
)

// Handler returns the worker's HTTP handler, to serve it on any server or platform:
// POST /tasks/{id} accepts a dispatch (202 at once, the attempt runs in the background; 401 for
// a missing, expired or mismatched run token, or one whose sealed storage backend this service's
// key does not open (forged, or for another service); 404 for an unknown task; 503 while
// shutting down), POST /tasks accepts several dispatches at once (a batch dispatch, which the
// worker offers at registration: 200 with each one's answer) and GET /health reports the
// worker's state. The attempts need the process
// to keep running after the answer: on a platform that freezes it between requests (Lambda,
// Cloud Run with request-based billing), keep CPU allocated.
func (w *Worker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /tasks/{id}", w.serveDispatch)
	mux.HandleFunc("POST "+protocol.DispatchBatchPath, w.serveDispatchBatch)
	mux.HandleFunc("GET /health", w.serveHealth)
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		writeError(rw, http.StatusNotFound, "ROUTE_NOT_FOUND", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func (w *Worker) serveDispatch(rw http.ResponseWriter, r *http.Request) {
	var d protocol.DispatchRequest
	dec := json.NewDecoder(http.MaxBytesReader(rw, r.Body, maxDispatchBytes))
	if err := dec.Decode(&d); err != nil {
		writeError(rw, http.StatusBadRequest, "MALFORMED_JSON", "the dispatch body is not valid JSON: "+err.Error())
		return
	}
	// The dispatch's trace context (traceparent, tracestate) becomes the attempt's parent.
	parent := trace.SpanContextFromContext(traceContext.Extract(context.Background(), propagation.HeaderCarrier(r.Header)))
	res := w.accept(&d, r.PathValue("id"), parent)
	if res.HTTPStatus != http.StatusAccepted {
		if res.HTTPStatus == http.StatusServiceUnavailable {
			rw.Header().Set("Retry-After", "5")
		}
		writeError(rw, res.HTTPStatus, res.Code, res.Error)
		return
	}
	writeJSON(rw, http.StatusAccepted, accepted{Accepted: true, Duplicate: res.Duplicate, RunID: d.RunID})
}

// serveDispatchBatch takes several dispatches in one request (POST /tasks, the batch dispatch
// this worker offers at registration) and answers each as serveDispatch would answer it alone.
func (w *Worker) serveDispatchBatch(rw http.ResponseWriter, r *http.Request) {
	var req protocol.DispatchBatchRequest
	dec := json.NewDecoder(http.MaxBytesReader(rw, r.Body, maxDispatchBatchBytes))
	if err := dec.Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(rw, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", fmt.Sprintf("the batch dispatch body is larger than %d bytes", maxDispatchBatchBytes))
			return
		}
		writeError(rw, http.StatusBadRequest, "MALFORMED_JSON", "the batch dispatch body is not valid JSON: "+err.Error())
		return
	}
	if len(req.Dispatches) == 0 || len(req.Dispatches) > dispatchBatchMax {
		writeError(rw, http.StatusBadRequest, "INVALID_BATCH", fmt.Sprintf("a batch dispatch carries 1 to %d dispatches", dispatchBatchMax))
		return
	}
	resp := protocol.DispatchBatchResponse{Results: make([]protocol.DispatchBatchResult, len(req.Dispatches))}
	for k := range req.Dispatches {
		it := &req.Dispatches[k]
		parent := trace.SpanContextFromContext(traceContext.Extract(context.Background(),
			propagation.MapCarrier{"traceparent": it.Traceparent, "tracestate": it.Tracestate}))
		resp.Results[k] = w.accept(&it.DispatchRequest, it.TaskID, parent)
	}
	writeJSON(rw, http.StatusOK, resp)
}

// accept checks dispatch d of task taskID (the route's) and starts its attempt, a child of
// parent, unless it already runs; the result is the single dispatch's answer: 202, or the
// error's status, code and message.
func (w *Worker) accept(d *protocol.DispatchRequest, taskID string, parent trace.SpanContext) protocol.DispatchBatchResult {
	res := protocol.DispatchBatchResult{RunID: d.RunID, HTTPStatus: http.StatusUnauthorized, Code: "UNAUTHORIZED"}
	if d.StorageToken == "" {
		res.Error = "the dispatch carries no storageToken"
		return res
	}
	// The worker has no run-token key: it reads the claims unverified and authenticates the
	// dispatch by opening the storage backend sealed for its service (run id as additional data).
	claims, err := token.ReadRun(d.StorageToken, time.Now())
	switch {
	case errors.Is(err, token.ErrExpired):
		res.Error = "the run token has expired"
		return res
	case err != nil:
		res.Error = "the run token is not valid"
		return res
	case claims.RunID != d.RunID || claims.TaskID != d.TaskID || claims.TaskID != taskID || claims.Attempt != d.Attempt:
		res.Error = "the run token was issued for another run, task or attempt"
		return res
	}
	if _, err := w.keys.OpenBackend(claims.RunID, claims.Storage); err != nil {
		res.Error = "the run token's storage credentials were not sealed for this service (forged, or for another service or service key)"
		return res
	}
	t := w.task(taskID)
	if t == nil {
		res.HTTPStatus, res.Code, res.Error = http.StatusNotFound, "TASK_NOT_FOUND", fmt.Sprintf("this worker has no task %q", taskID)
		return res
	}
	k := runKey{runID: d.RunID, lease: claims.Lease}
	base, started, draining := w.begin(k)
	if draining {
		res.HTTPStatus, res.Code, res.Error = http.StatusServiceUnavailable, "SHUTTING_DOWN", "the worker is shutting down"
		return res
	}
	if started {
		go func() {
			defer w.end(k)
			w.execute(base, t, d, claims, parent)
		}()
	}
	return protocol.DispatchBatchResult{RunID: d.RunID, HTTPStatus: http.StatusAccepted, Duplicate: !started}
}

// accepted is the 202 answer to a dispatch, its fields in the order a map of them was written
// in (a struct encodes without sorting keys or reflecting on interface values).
type accepted struct {
	Accepted  bool   `json:"accepted"`
	Duplicate bool   `json:"duplicate"`
	RunID     string `json:"runId"`
}

func (w *Worker) serveHealth(rw http.ResponseWriter, _ *http.Request) {
	w.mu.Lock()
	ids := make([]string, 0, len(w.tasks))
	for id := range w.tasks {
		ids = append(ids, id)
	}
	running, draining := w.inFlight, w.draining
	w.mu.Unlock()
	slices.Sort(ids)
	status, code := "ok", http.StatusOK
	if draining {
		status, code = "draining", http.StatusServiceUnavailable
	}
	writeJSON(rw, code, map[string]any{"status": status, "serviceId": w.cfg.ServiceID, "version": w.cfg.Version,
		"tasks": ids, "running": running})
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}

func writeError(rw http.ResponseWriter, status int, code, msg string) {
	writeJSON(rw, status, protocol.ErrorBody{Error: msg, Code: code})
}

// RegisterWithOrchestrator registers the service and its tasks with the orchestrator
// (POST /api/register, authenticated with a fresh registration token) and returns the
// orchestrator's answer: the tasks whose code hash changed and the tasks a new version
// orphaned. It needs the BaseURL (from Config, or derived by Listen and Serve).
func (w *Worker) RegisterWithOrchestrator(ctx context.Context) (protocol.RegisterResponse, error) {
	req, err := w.registration()
	if err != nil {
		return protocol.RegisterResponse{}, err
	}
	// The token is bound to these exact body bytes (its bsh claim).
	body, err := json.Marshal(req)
	if err != nil {
		return protocol.RegisterResponse{}, fmt.Errorf("worker: register: encode body: %w", err)
	}
	tok, err := w.keys.SignRegistration(w.cfg.ServiceID, body, time.Now())
	if err != nil {
		return protocol.RegisterResponse{}, fmt.Errorf("worker: register: %w", err)
	}
	var resp protocol.RegisterResponse
	if err := w.post(ctx, "/api/register", tok, json.RawMessage(body), &resp); err != nil {
		return protocol.RegisterResponse{}, fmt.Errorf("worker: register service %q: %w", w.cfg.ServiceID, err)
	}
	for _, c := range resp.CodeChanges {
		w.log.Info("task code changed", "task", c.TaskID, "oldVersion", c.OldVersion, "newVersion", c.NewVersion)
	}
	if len(resp.OrphanedTasks) > 0 {
		w.log.Warn("tasks no longer served by this version", "tasks", resp.OrphanedTasks)
	}
	return resp, nil
}

// registration builds the registration body.
func (w *Worker) registration() (protocol.RegisterRequest, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.baseURL == "" {
		return protocol.RegisterRequest{}, errors.New("worker: register: BaseURL is not set (set Config.BaseURL or use Listen)")
	}
	if len(w.tasks) == 0 {
		return protocol.RegisterRequest{}, errors.New("worker: register: no task is registered")
	}
	req := protocol.RegisterRequest{ServiceID: w.cfg.ServiceID, Version: w.cfg.Version, BaseURL: w.baseURL, Pipelines: w.cfg.Pipelines,
		DispatchBatchMax: dispatchBatchMax}
	for _, t := range w.tasks {
		req.Tasks = append(req.Tasks, t.definition())
	}
	slices.SortFunc(req.Tasks, func(a, b protocol.TaskDefinition) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return req, nil
}

// definition maps a task's Options to its registration entry, in the protocol's units.
func (t *task) definition() protocol.TaskDefinition {
	o := t.opts
	d := protocol.TaskDefinition{
		ID:              t.id,
		CodeHash:        t.hash,
		AllowedNext:     o.AllowedNext,
		Retries:         o.Retries,
		RetryBackoff:    o.RetryBackoff,
		Priority:        o.Priority,
		Description:     o.Description,
		InputSchema:     o.InputSchema,
		InputJSONSchema: o.InputJSONSchema,
	}
	if o.Timeout > 0 {
		d.Timeout = ptr(ceilSeconds(o.Timeout))
	}
	switch {
	case o.RetryDelay > 0:
		d.RetryDelayMs = ptr(ceilMillis(o.RetryDelay))
	case o.RetryDelay < 0:
		d.RetryDelayMs = ptr(int64(0))
	}
	if o.MaxRetryDelay > 0 {
		d.MaxRetryDelayMs = ptr(ceilMillis(o.MaxRetryDelay))
	}
	if o.HeartbeatInterval > 0 {
		d.HeartbeatIntervalMs = ptr(ceilMillis(o.HeartbeatInterval))
	}
	if o.Concurrency > 0 {
		d.Concurrency = ptr(o.Concurrency)
	}
	if o.RateLimit != nil {
		d.RateLimit = ptr(*o.RateLimit)
	}
	d.RateLimitKey = o.RateLimitKey
	if o.ConcurrencyKey != "" {
		d.ConcurrencyKey, d.ConcurrencyPerKey = o.ConcurrencyKey, ptr(o.ConcurrencyPerKey)
	}
	if o.IdempotencyTTL > 0 {
		d.IdempotencyTTL = ptr(ceilSeconds(o.IdempotencyTTL))
	}
	return d
}

func ptr[T any](v T) *T { return &v }

func ceilSeconds(d time.Duration) int {
	return int(min(math.Ceil(d.Seconds()), math.MaxInt32))
}

func ceilMillis(d time.Duration) int64 {
	return int64(math.Ceil(float64(d) / float64(time.Millisecond)))
}

// Listen listens on the TCP address addr and serves the worker until ctx ends (see Serve).
func (w *Worker) Listen(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("worker: listen on %s: %w", addr, err)
	}
	return w.Serve(ctx, ln)
}

// Serve serves the worker's Handler on ln until ctx ends. Once it is serving, it registers with
// the orchestrator, retrying while the orchestrator is unreachable or answers 429 or 5xx
// (apiclient.Retry); a refused registration (another 4xx: wrong secret, invalid task options)
// stops it with that error. When ctx
// ends it stops accepting dispatches (503, which the orchestrator retries later without using
// up an attempt), waits up to Config.ShutdownTimeout for the running attempts, then cancels
// the rest (they report a retryable WORKER_SHUTDOWN failure) and returns nil. If BaseURL is
// empty it is derived from ln's address.
func (w *Worker) Serve(ctx context.Context, ln net.Listener) error {
	w.mu.Lock()
	if w.baseURL == "" {
		w.baseURL = baseURLOf(ln.Addr())
	}
	if w.draining && w.inFlight == 0 {
		// Served before: start afresh.
		w.draining = false
		w.base, w.stop = context.WithCancelCause(context.Background())
	}
	w.mu.Unlock()
	srv := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	regCtx, cancelReg := context.WithCancel(ctx)
	defer cancelReg()
	registered := make(chan error, 1)
	go func() { registered <- w.registerUntilDone(regCtx) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("worker: serve: %w", err)
	case err = <-registered:
		if err == nil {
			select {
			case <-ctx.Done():
			case err = <-served:
				err = fmt.Errorf("worker: serve: %w", err)
			}
		}
	}
	cancelReg()
	w.shutdown(srv)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return err
}

// registerUntilDone registers, retrying transient failures (apiclient.Retry) until ctx ends.
func (w *Worker) registerUntilDone(ctx context.Context) error {
	err := apiclient.Retry(ctx, 0, func(ctx context.Context) error {
		_, err := w.RegisterWithOrchestrator(ctx)
		return err
	}, func(_ int, err error, wait time.Duration) {
		w.log.Warn("registration failed; retrying", "err", err, "in", wait)
	})
	if err == nil {
		w.log.Info("registered with the orchestrator", "orchestrator", w.api.URL(), "baseUrl", w.baseURL)
	}
	return err
}

// shutdown stops srv and waits for the running attempts, cancelling them when the shutdown
// timeout passes.
func (w *Worker) shutdown(srv *http.Server) {
	w.mu.Lock()
	w.draining = true
	idle := w.idle
	w.mu.Unlock()
	timer := time.NewTimer(w.cfg.ShutdownTimeout)
	defer timer.Stop()
	sctx, cancel := context.WithTimeout(context.Background(), w.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	select {
	case <-idle:
		return
	case <-timer.C:
	}
	w.log.Warn("shutdown timeout passed; cancelling the running attempts")
	w.mu.Lock()
	stop := w.stop
	w.mu.Unlock()
	stop(errShutdown)
	// The cancelled attempts report their failure; give them a bounded time for it.
	select {
	case <-idle:
	case <-time.After(30 * time.Second):
		w.log.Error("attempts still running after the shutdown")
	}
}

// baseURLOf derives a base URL from a listening address.
func baseURLOf(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
