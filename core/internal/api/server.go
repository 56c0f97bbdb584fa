// Package api serves the orchestrator's HTTP API over the engine: the public endpoints, the
// worker endpoints (registration, heartbeat, progress, callback) and /health.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/pipeweave/pipeweave/core/internal/defaults"
	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/internal/ui"
	"github.com/pipeweave/pipeweave/core/internal/wire"
	"github.com/pipeweave/pipeweave/core/migrate"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/token"
)

// Options configure a Server.
type Options struct {
	// APIKeys, when not empty, are the bearer keys every non-worker endpoint requires.
	APIKeys []string
	// Compat accepts unauthenticated registration and worker calls (node-sdk-v1 workers).
	Compat bool
	// MaxBodyBytes caps request bodies (default 10 MiB).
	MaxBodyBytes int64
	// MaxUploadBytes caps the file of POST /api/upload/temp (default 100 MiB); that route's body
	// is not held to MaxBodyBytes.
	MaxUploadBytes int64
	// Mode is reported by /health.
	Mode string
	// Ready is called after a request made work ready (an enqueue, a callback that freed a slot,
	// a DLQ retry). Standalone mode wakes its loop; serverless mode dispatches inline.
	Ready func(ctx context.Context)
	// ReadyNow is called instead of Ready when the work a request made ready is a pipeline's
	// next step, whose latency is the pipeline's (a trigger, a callback that made a successor
	// pending). Default: Ready.
	ReadyNow func(ctx context.Context)
	// Process runs one bounded batch for POST /api/process.
	Process func(ctx context.Context) (protocol.ProcessSummary, error)
	// Schema checks the database's schema (nil when current; remembered by the caller). While
	// it returns an error wrapping migrate.ErrSchema, /api/ requests get 503 SCHEMA_MISMATCH
	// and /health 503 with the error. Nil skips the check.
	Schema func(ctx context.Context) error
	// Now is the clock for token checks (default time.Now).
	Now func() time.Time
	// Metrics serves GET /metrics (Prometheus text format); nil answers 404.
	Metrics http.Handler
	// MaxBatchSize caps the tasks of POST /api/queue/batch (default 1000).
	MaxBatchSize int
	// MaxTasksPerRegistration caps the tasks of POST /api/register (default 500).
	MaxTasksPerRegistration int
	// MaxWorkerBodyBytes caps the bodies of heartbeat, progress, callback and idempotency
	// check (default 64 KiB).
	MaxWorkerBodyBytes int64
	// MaxInlineOutputBytes is the largest output a callback may carry inline (the engine's
	// InlineMax, 0 = none): a callback's body may be that much longer than MaxWorkerBodyBytes.
	MaxInlineOutputBytes int64
	// MaxConcurrentBodies caps the request bodies of authenticated requests read at once
	// (default 128); MaxUnauthenticatedBodies those of requests without a valid credential
	// (default 16), in a pool of their own (bodygate.go). BodySlotWait is how long a request
	// waits for a slot before it is answered 503 (default 1 s).
	MaxConcurrentBodies      int
	MaxUnauthenticatedBodies int
	BodySlotWait             time.Duration
	// MaxConcurrency and PollInterval are reported by GET /api/info.
	MaxConcurrency int
	PollInterval   time.Duration
	// InsecureNoAuth says the API is served without keys on purpose: /health reports
	// "auth": "none" and every mutating request needs its Content-Type (guard.go).
	InsecureNoAuth bool
	// AllowedHosts, when not empty, are the Host names (without port) the server answers; any
	// other gets 421, /health excepted (guard.go).
	AllowedHosts []string
}

// Server is the HTTP API.
type Server struct {
	eng  *engine.Engine
	keys *token.Keyring
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
	// started is when the server was built (GET /api/info's uptime).
	started time.Time
	// patterns are the route patterns routes() registered, in order (the catch-all "/" aside).
	patterns []string
	// bodies bounds the request bodies read at once (bodygate.go).
	bodies *bodyPools
}

// New builds the API over eng.
func New(eng *engine.Engine, keys *token.Keyring, opts Options, log *slog.Logger) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = defaults.MaxBodyBytes
	}
	if opts.MaxUploadBytes <= 0 {
		opts.MaxUploadBytes = defaults.MaxUploadBytes
	}
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = defaults.MaxBatchSize
	}
	if opts.MaxTasksPerRegistration <= 0 {
		opts.MaxTasksPerRegistration = defaults.MaxTasksPerRegistration
	}
	if opts.MaxWorkerBodyBytes <= 0 {
		opts.MaxWorkerBodyBytes = defaults.MaxWorkerBodyBytes
	}
	if opts.Ready == nil {
		opts.Ready = func(context.Context) {}
	}
	if opts.ReadyNow == nil {
		opts.ReadyNow = opts.Ready
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{eng: eng, keys: keys, opts: opts, log: log, mux: http.NewServeMux(), started: time.Now(),
		bodies: newBodyPools(opts.MaxConcurrentBodies, opts.MaxUnauthenticatedBodies, opts.BodySlotWait)}
	s.routes()
	return s
}

func (s *Server) routes() {
	handle := func(pattern string, h http.Handler) {
		s.patterns = append(s.patterns, pattern)
		s.mux.Handle(pattern, h)
	}
	// Open.
	handle("GET /health", http.HandlerFunc(s.health))
	handle("GET /api/openapi.json", http.HandlerFunc(serveOpenAPI))
	// Worker endpoints: authenticated by the registration token or the run token.
	handle("POST /api/register", http.HandlerFunc(s.register))
	handle("POST /api/heartbeat", http.HandlerFunc(s.heartbeat))
	handle("POST /api/progress", http.HandlerFunc(s.heartbeat))
	handle("POST /api/callback/{runId}", http.HandlerFunc(s.callback))
	handle("POST "+protocol.CallbackBatchPath, http.HandlerFunc(s.callbackBatch))
	handle("POST /api/idempotency/check", http.HandlerFunc(s.idempotencyCheck))
	// Public API: API keys when configured.
	api := func(pattern string, h http.HandlerFunc) { handle(pattern, s.requireKey(authenticated(h))) }
	api("GET /api/services", noArg(s, s.eng.Services, wire.Services))
	api("GET /api/services/{id}/tasks", byID(s, s.eng.ServiceTasks, wire.Tasks))
	api("GET /api/tasks/{id}/history", byID(s, s.eng.TaskHistory, wire.History))
	api("GET /api/tasks/{id}/input-schema", byID(s, s.eng.TaskInputSchema, wire.InputSchemaInfo))
	api("POST /api/tasks/{id}/validate-input", s.validateInput)
	api("POST /api/tasks/{id}/pause", s.pauseTask(s.eng.PauseTask, false))
	api("POST /api/tasks/{id}/resume", s.pauseTask(s.eng.ResumeTask, true))
	api("GET /api/rate-limits", s.listRateLimits)
	api("GET /api/rate-limits/{key}", s.getRateLimit)
	api("PUT /api/rate-limits/{key}", s.putRateLimit)
	api("DELETE /api/rate-limits/{key}", s.bodiless(s.deleteRateLimit))
	api("POST /api/queue/task", s.enqueueOne)
	api("POST /api/queue/batch", s.enqueueBatch)
	api("GET /api/queue/status", noArg(s, s.eng.QueueStatus, wire.QueueStatus))
	api("GET /api/queue/items", s.queueItems)
	api("GET /api/task-runs/{id}", byID(s, s.eng.GetRun, wire.Run))
	api("POST /api/task-runs/{id}/cancel", s.bodiless(byID(s, s.eng.CancelRun, wire.Run)))
	api("GET /api/dlq", s.dlqList)
	api("GET /api/dlq/{id}", byID(s, s.eng.GetDLQ, wire.DLQEntry))
	api("POST /api/dlq/{id}/retry", s.dlqRetry)
	api("POST /api/dlq/retry-all", s.dlqRetryAll)
	api("POST /api/dlq/purge", s.dlqPurge)
	api("POST /api/process", s.process)
	api("GET /api/maintenance", s.maintenance)
	api("POST /api/maintenance/enter", s.maintenanceEnter)
	api("POST /api/maintenance/exit", s.maintenanceExit)
	api("GET /api/pipelines", noArg(s, s.eng.Pipelines, wire.Pipelines))
	api("GET /api/pipelines/{id}", byID(s, s.eng.GetPipeline, wire.Pipeline))
	api("PUT /api/pipelines/{id}", s.putPipeline)
	api("POST /api/pipelines/{id}/trigger", s.trigger)
	api("POST /api/pipelines/{id}/dry-run", s.dryRun)
	api("POST /api/pipelines/{id}/pause", s.pausePipeline(s.eng.PausePipeline, false))
	api("POST /api/pipelines/{id}/resume", s.pausePipeline(s.eng.ResumePipeline, true))
	api("GET /api/schedules", s.listSchedules)
	api("GET /api/schedules/{id}", byID(s, s.eng.GetSchedule, wire.Schedule))
	api("PUT /api/schedules/{id}", s.putSchedule)
	api("DELETE /api/schedules/{id}", s.deleteSchedule)
	api("GET /api/runs", s.runs)
	api("GET /api/storage/{path...}", s.object)
	api("GET /api/runs/{id}", s.pipelineRun)
	api("GET /api/runs/{id}/maps/{taskId}/items", s.mapItems)
	api("POST /api/runs/{id}/cancel", s.bodiless(byID(s, s.eng.CancelPipelineRun, wire.PipelineRun)))
	api("POST "+uploadPath, s.uploadTemp)
	api("GET "+uploadPath+"/{id}", byID(s, s.eng.GetTempUpload, wire.TempUploadInfo))
	api("DELETE "+uploadPath+"/{id}", s.deleteTempUpload)
	api("GET /api/upload/stats", noArg(s, s.eng.TempUploadStats, wire.TempUploadStats))
	api("GET /api/webhooks", noArg(s, s.eng.ListWebhooks, same[protocol.WebhookList]))
	api("GET /api/webhooks/{id}", byID(s, s.eng.GetWebhook, same[protocol.Webhook]))
	api("PUT /api/webhooks/{id}", s.putWebhook)
	api("DELETE /api/webhooks/{id}", s.deleteWebhook)
	api("GET /api/webhooks/{id}/deliveries", s.webhookDeliveries)
	api("POST /api/webhooks/{id}/deliveries/{deliveryId}/resend", s.bodiless(s.resendWebhookDelivery))
	api("GET /metrics", s.metrics)
	// Upstream's routes (packages/orchestrator/src/routes), see upstream.go.
	api("GET /api/info", s.info)
	api("POST /api/tick", s.process)
	api("GET /api/services/{id}", byID(s, s.eng.GetService, wire.ServiceDetail))
	api("GET /api/storage/backends", s.storageBackends)
	// The web dashboard: not part of the API (no API key for the page itself; its calls carry one).
	s.mux.Handle("GET "+ui.Prefix, ui.Handler())
	s.mux.Handle("GET /ui", http.RedirectHandler(ui.Prefix, http.StatusMovedPermanently))
	// The root points a browser at the dashboard (302: the root may mean something else later).
	s.mux.Handle("GET /{$}", http.RedirectHandler(ui.Prefix, http.StatusFound))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "ROUTE_NOT_FOUND", "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
	})
}

// ServeHTTP caps the body, recovers from panics and serves the route.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			writeErr(w, http.StatusInternalServerError, "INTERNAL", "internal error", nil)
		}
	}()
	r.Body = http.MaxBytesReader(w, r.Body, s.bodyLimit(r))
	// The Host and Content-Type checks come before any body is read (guard.go).
	if !s.guard(w, r) {
		return
	}
	// Bodies are read a bounded number at a time, unauthenticated ones in a pool of their own.
	w, r, finish := s.bodies.admit(w, r)
	defer finish()
	// A W3C traceparent (and tracestate) makes the request's spans children of the caller's.
	if r.Header.Get("traceparent") != "" {
		r = r.WithContext(telemetry.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
	}
	// No NUL or invalid UTF-8 in the path or the query reaches a handler (inputcheck.go).
	if p := checkURL(r.URL); p != nil {
		p.write(w)
		return
	}
	// The mux would answer a storage path with ".." or "//" by redirecting to a cleaned path;
	// such a path is refused instead, whoever asks.
	if key, ok := strings.CutPrefix(r.URL.Path, "/api/storage/"); ok && storage.ValidateKey(key) != nil {
		writeErr(w, http.StatusBadRequest, "INVALID_PATH", "storage paths are relative, without '..', '.' or empty segments", nil)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/api/") && !s.schemaMatches(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// schemaMatches answers 503 SCHEMA_MISMATCH and returns false when the database's schema is
// missing, older or newer than this binary's. Any other error of the check (an unreachable
// database) lets the request through, to fail or succeed on its own.
func (s *Server) schemaMatches(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.Schema == nil {
		return true
	}
	err := s.opts.Schema(r.Context())
	if !errors.Is(err, migrate.ErrSchema) {
		return true
	}
	writeErr(w, http.StatusServiceUnavailable, "SCHEMA_MISMATCH", err.Error(), nil)
	return false
}

// byID serves a read of the object named by the path's {id}, answered in its wire shape
// (toWire, from package wire).
func byID[T, W any](s *Server, read func(context.Context, string) (T, error), toWire func(T) W) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := read(r.Context(), r.PathValue("id"))
		answer(s, w, r, http.StatusOK, out, err, toWire)
	}
}

// bodiless serves h for a request whose body is empty or an empty JSON object; any other body
// is a 400 (decodeOptional), and nothing runs.
func (s *Server) bodiless(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.decodeOptional(w, r) {
			h(w, r)
		}
	}
}

// same is the wire shape of values that have it already.
func same[T any](v T) T { return v }

// noArg serves a read that takes no argument, answered in its wire shape.
func noArg[T, W any](s *Server, read func(context.Context) (T, error), toWire func(T) W) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := read(r.Context())
		answer(s, w, r, http.StatusOK, out, err, toWire)
	}
}

// answer answers toWire(v) with status, or err with the status its kind calls for.
func answer[T, W any](s *Server, w http.ResponseWriter, r *http.Request, status int, v T, err error, toWire func(T) W) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, status, toWire(v))
}

// reply answers v with status, or err with the status its kind calls for.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func (s *Server) requireKey(h http.HandlerFunc) http.Handler {
	if len(s.opts.APIKeys) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.validKey(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pipeweave"`)
			writeErr(w, http.StatusUnauthorized, "UNAUTHORIZED", "an API key is required: Authorization: Bearer <key>", nil)
			return
		}
		h(w, r)
	})
}

// metrics serves the Prometheus metrics.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.opts.Metrics == nil {
		writeErr(w, http.StatusNotFound, "ROUTE_NOT_FOUND", "metrics are not enabled", nil)
		return
	}
	s.opts.Metrics.ServeHTTP(w, r)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.eng.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "database": "unreachable", "mode": s.opts.Mode})
		return
	}
	if s.opts.Schema != nil {
		if err := s.opts.Schema(ctx); errors.Is(err, migrate.ErrSchema) {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "database": "ok",
				"schema": err.Error(), "mode": s.opts.Mode})
			return
		}
	}
	// Maintenance is an operator's choice, not a failure: health stays 200 and says so.
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "database": "ok", "mode": s.opts.Mode,
		"maintenance": s.healthMaintenance(ctx), "auth": s.authMode()})
}

// workerCall authenticates a worker call for runID from its run token. In compat mode a call
// without a token applies to the run's current lease.
// runToken verifies the run token of r once. ok is false for a call without a token, which
// only compat mode accepts.
func (s *Server) runToken(r *http.Request) (claims token.RunClaims, ok bool, err error) {
	claims, ok, err = s.verifyRunToken(bearer(r), "Authorization: Bearer <storageToken>")
	if ok {
		markAuthenticated(r)
	}
	return claims, ok, err
}

// verifyRunToken verifies a run token tok, sent where says: ok is false, with no error, for no
// token in compat mode; a missing, expired or invalid token is ErrUnauthorized.
func (s *Server) verifyRunToken(tok, where string) (claims token.RunClaims, ok bool, err error) {
	if tok == "" {
		if s.opts.Compat {
			return token.RunClaims{}, false, nil
		}
		return token.RunClaims{}, false, engine.Unauthorized("the run token is required: %s", where)
	}
	claims, err = s.keys.VerifyRun(tok, s.opts.Now())
	if err != nil {
		if errors.Is(err, token.ErrExpired) {
			return token.RunClaims{}, false, engine.Unauthorized("the run token has expired")
		}
		return token.RunClaims{}, false, engine.Unauthorized("the run token is not valid")
	}
	return claims, true, nil
}

// bindCall makes the call of a verified token (or of none, in compat mode) for runID: the
// token must have been issued for that run.
func bindCall(claims token.RunClaims, ok bool, runID string) (engine.WorkerCall, error) {
	if !ok {
		return engine.WorkerCall{RunID: runID}, nil
	}
	if claims.RunID != runID {
		return engine.WorkerCall{}, engine.Unauthorized("the run token was issued for another run")
	}
	lease := claims.Lease
	return engine.WorkerCall{RunID: runID, Lease: &lease}, nil
}

// workerCall authenticates a worker call for runID with the run token of r.
func (s *Server) workerCall(r *http.Request, runID string) (engine.WorkerCall, error) {
	claims, ok, err := s.runToken(r)
	if err != nil {
		return engine.WorkerCall{}, err
	}
	return bindCall(claims, ok, runID)
}

// decodeWorkerCall decodes the body of a worker call into body and authenticates the call for
// the run it names (*runID, a field of body). The token is verified before the body is read, so
// a call without a valid one is refused unread; the run it names is compared with the body's
// runId after. It answers the request itself and returns false on failure.
func (s *Server) decodeWorkerCall(w http.ResponseWriter, r *http.Request, body any, runID *string) (engine.WorkerCall, bool) {
	claims, ok, err := s.runToken(r)
	if err != nil {
		s.fail(w, r, err)
		return engine.WorkerCall{}, false
	}
	if !s.decode(w, r, body) {
		return engine.WorkerCall{}, false
	}
	if *runID == "" {
		writeErr(w, http.StatusBadRequest, "INVALID_RUN_ID", "runId is required", nil)
		return engine.WorkerCall{}, false
	}
	call, err := bindCall(claims, ok, *runID)
	if err != nil {
		s.fail(w, r, err)
		return engine.WorkerCall{}, false
	}
	return call, true
}

// heartbeatBody is protocol.HeartbeatRequest as it arrives: upstream's schema (and so the
// Node.js SDK) allows a fractional progress, which is recorded rounded to a whole percent.
type heartbeatBody struct {
	RunID    string   `json:"runId"`
	Progress *float64 `json:"progress,omitempty"`
	Message  string   `json:"message,omitempty"`
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	var req heartbeatBody
	call, ok := s.decodeWorkerCall(w, r, &req, &req.RunID)
	if !ok {
		return
	}
	if tooLong(w, "MESSAGE_TOO_LONG", "message", req.Message, MaxMessageBytes) {
		return
	}
	var progress *int
	if req.Progress != nil {
		p := *req.Progress
		if p < 0 || p > 100 {
			writeErr(w, http.StatusBadRequest, "INVALID_PROGRESS", "progress must be between 0 and 100", nil)
			return
		}
		n := int(math.Round(p))
		progress = &n
	}
	resp, err := s.eng.Heartbeat(r.Context(), call, progress, req.Message)
	if errors.Is(err, engine.ErrConflict) {
		writeJSON(w, http.StatusConflict, map[string]any{"acknowledged": false, "shouldCancel": true,
			"error": err.Error(), "code": "STALE_LEASE"})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	runID := r.PathValue("runId")
	// The token names the run in the path: it is checked before the body is read.
	call, err := s.workerCall(r, runID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req protocol.CallbackRequest
	if !s.decode(w, r, &req) {
		return
	}
	capCallbackError(&req)
	res, err := s.eng.Callback(r.Context(), call, &req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.afterCallbacks(r.Context(), res)
	writeJSON(w, http.StatusOK, map[string]any{"acknowledged": true, "applied": res.Applied, "status": res.Status})
}

// afterCallbacks starts what applied callbacks made possible: a pipeline's next step at once
// when one made a successor pending; else, when one ended an attempt, a claim (a concurrency
// slot is free, and a retry may be ready), unless the commit that applied it claimed already.
func (s *Server) afterCallbacks(ctx context.Context, res ...engine.CallbackResult) {
	freed := false
	for _, x := range res {
		if x.Readied {
			s.opts.ReadyNow(ctx)
			return
		}
		freed = freed || (x.Applied && !x.Refilled)
	}
	if freed {
		s.opts.Ready(ctx)
	}
}

// callbackBatch serves POST /api/callbacks: the callbacks of several runs, each with its run's
// token, answered one by one as POST /api/callback/{runId} answers each (docs/protocol.md,
// "Batch callback"). The bearer must be a valid run token (any of the request's, normally the
// first), checked before the body is read, as for a single callback; then each callback's own
// token authenticates it for its run. The callbacks that pass their checks are applied
// together, in one group commit.
func (s *Server) callbackBatch(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.runToken(r); err != nil {
		s.fail(w, r, err)
		return
	}
	var req protocol.CallbackBatchRequest
	if !s.decode(w, r, &req) {
		return
	}
	switch n := len(req.Callbacks); {
	case n == 0:
		writeErr(w, http.StatusBadRequest, "INVALID_BATCH", "callbacks must list at least one callback", map[string]any{"field": "callbacks"})
		return
	case n > engine.MaxCallbacksPerRequest:
		writeErr(w, http.StatusBadRequest, "BATCH_TOO_LARGE",
			fmt.Sprintf("the batch has %d callbacks; at most %d are accepted, split it", n, engine.MaxCallbacksPerRequest),
			map[string]any{"field": "callbacks", "limit": engine.MaxCallbacksPerRequest})
		return
	}
	results := make([]protocol.CallbackBatchResult, len(req.Callbacks))
	var ctxs []context.Context
	var calls []engine.WorkerCall
	var cbs []*protocol.CallbackRequest
	var at []int // the index in req.Callbacks of each of calls
	for i := range req.Callbacks {
		it := &req.Callbacks[i]
		results[i].RunID = it.RunID
		call, err := s.batchCall(it)
		if err != nil {
			s.batchFailed(r, &results[i], err)
			continue
		}
		capCallbackError(&it.CallbackRequest)
		ctx := r.Context()
		if it.Traceparent != "" {
			// Each callback's span joins its own attempt's trace, as a single callback's does.
			ctx = telemetry.Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": it.Traceparent, "tracestate": it.Tracestate})
		}
		ctxs, calls, cbs, at = append(ctxs, ctx), append(calls, call), append(cbs, &it.CallbackRequest), append(at, i)
	}
	var ok []engine.CallbackResult
	if len(calls) > 0 {
		res, errs := s.eng.CallbackMany(ctxs, calls, cbs)
		for k, i := range at {
			if errs[k] != nil {
				s.batchFailed(r, &results[i], errs[k])
				continue
			}
			results[i].HTTPStatus, results[i].Acknowledged = http.StatusOK, true
			results[i].Applied, results[i].Status = &res[k].Applied, string(res[k].Status)
			ok = append(ok, res[k])
		}
	}
	if r.Context().Err() != nil {
		return
	}
	s.afterCallbacks(r.Context(), ok...)
	writeJSON(w, http.StatusOK, protocol.CallbackBatchResponse{Results: results})
}

// batchCall authenticates one callback of a batch with its own token, as workerCall does a
// single callback with the bearer.
func (s *Server) batchCall(it *protocol.CallbackBatchItem) (engine.WorkerCall, error) {
	if it.RunID == "" {
		return engine.WorkerCall{}, &engine.Error{Kind: engine.ErrInvalid, Code: "INVALID_RUN_ID", Msg: "runId is required"}
	}
	claims, ok, err := s.verifyRunToken(it.Token, "token")
	if err != nil {
		return engine.WorkerCall{}, err
	}
	return bindCall(claims, ok, it.RunID)
}

// batchFailed records err as the answer of one callback of a batch.
func (s *Server) batchFailed(r *http.Request, res *protocol.CallbackBatchResult, err error) {
	status, body, ok := s.errorAnswer(r, err)
	if !ok {
		status, body = http.StatusServiceUnavailable, protocol.ErrorBody{Error: "the request was cancelled", Code: "CANCELLED"}
	}
	res.HTTPStatus, res.Error, res.Code, res.Details = status, body.Error, body.Code, body.Details
}

func (s *Server) enqueueOne(w http.ResponseWriter, r *http.Request) {
	var req protocol.EnqueueRequest
	if !s.decode(w, r, &req) {
		return
	}
	res, created, err := s.eng.Enqueue(r.Context(), []engine.EnqueueRequest{wire.FromEnqueueRequest(req)})
	if err != nil {
		if !validationFailed(w, err, false) {
			s.fail(w, r, err)
		}
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		s.opts.Ready(r.Context())
	}
	writeJSON(w, status, wire.EnqueueResults(res)[0])
}

func (s *Server) enqueueBatch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Tasks []protocol.EnqueueRequest `json:"tasks"`
		// ValidationMode applies to the tasks that name none.
		ValidationMode string `json:"validationMode"`
	}
	if !s.decode(w, r, &req) || s.batchTooBig(w, len(req.Tasks)) {
		return
	}
	if err := engine.CheckValidationMode(req.ValidationMode); err != nil {
		s.fail(w, r, err)
		return
	}
	for i := range req.Tasks {
		if req.Tasks[i].ValidationMode == "" {
			req.Tasks[i].ValidationMode = req.ValidationMode
		}
	}
	res, created, err := s.eng.Enqueue(r.Context(), wire.FromEnqueueRequests(req.Tasks))
	if err != nil {
		if !validationFailed(w, err, true) {
			s.fail(w, r, err)
		}
		return
	}
	queued := 0
	for _, x := range res {
		if !x.Deduplicated {
			queued++
		}
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		s.opts.Ready(r.Context())
	}
	writeJSON(w, status, map[string]any{"queued": queued, "results": wire.EnqueueResults(res)})
}

// limitParam reads ?limit=; a non-number is a 400.
func limitParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, &engine.Error{Kind: engine.ErrInvalid, Code: "INVALID_LIMIT", Msg: "limit must be a positive integer"}
	}
	return n, nil
}

func (s *Server) queueItems(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	page, err := s.eng.ListRuns(r.Context(), engine.RunFilter{Status: q.Get("status"), TaskID: q.Get("taskId"), Cursor: q.Get("cursor"), Limit: limit})
	answer(s, w, r, http.StatusOK, page, err, wire.RunPage)
}

func (s *Server) dlqList(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	page, err := s.eng.ListDLQ(r.Context(), engine.DLQFilter{TaskID: q.Get("taskId"), PipelineID: q.Get("pipelineId"),
		State: q.Get("state"), Cursor: q.Get("cursor"), Limit: limit})
	answer(s, w, r, http.StatusOK, page, err, wire.DLQPage)
}

func (s *Server) dlqRetry(w http.ResponseWriter, r *http.Request) {
	res, err := s.eng.RetryDLQ(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.opts.Ready(r.Context())
	writeJSON(w, http.StatusCreated, wire.DLQRetryResult(res))
}

// retryAllRequest narrows a bulk DLQ retry; empty fields match every entry.
type retryAllRequest struct {
	TaskID     string `json:"taskId"`
	PipelineID string `json:"pipelineId"`
	Limit      int    `json:"limit"`
}

func (s *Server) dlqRetryAll(w http.ResponseWriter, r *http.Request) {
	var req retryAllRequest
	if !s.decodeStrict(w, r, &req) {
		return
	}
	if req.Limit < 0 {
		writeErr(w, http.StatusBadRequest, "INVALID_LIMIT", "limit must not be negative", nil)
		return
	}
	res, err := s.eng.RetryAllDLQ(r.Context(), req.TaskID, req.PipelineID, req.Limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if res.Retried > 0 {
		s.opts.Ready(r.Context())
	}
	writeJSON(w, http.StatusOK, wire.RetryAllResult(res))
}

// purgeRequest names the age past which DLQ entries are deleted: "7d", "36h", "90m".
type purgeRequest struct {
	OlderThan string `json:"olderThan"`
}

func (s *Server) dlqPurge(w http.ResponseWriter, r *http.Request) {
	var req purgeRequest
	if !s.decode(w, r, &req) {
		return
	}
	age, err := parseAge(req.OlderThan)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "INVALID_OLDER_THAN", "olderThan: "+err.Error(), nil)
		return
	}
	n, err := s.eng.PurgeDLQ(r.Context(), age)
	s.reply(w, r, http.StatusOK, map[string]any{"deleted": n, "olderThan": req.OlderThan}, err)
}

// parseAge reads an age such as "7d", "36h", "90m" or "1h30m": a Go duration, or a whole
// number of days with the suffix d. It must be positive.
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New(`an age is required, such as "7d", "36h" or "90m"`)
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100000 {
			return 0, fmt.Errorf("%q is not a number of days such as \"7d\"", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q is not an age such as \"7d\", \"36h\" or \"90m\"", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be a positive age", s)
	}
	return d, nil
}

func (s *Server) process(w http.ResponseWriter, r *http.Request) {
	sum, err := s.opts.Process(r.Context())
	s.reply(w, r, http.StatusOK, sum, err)
}

func (s *Server) putPipeline(w http.ResponseWriter, r *http.Request) {
	var def protocol.PipelineDefinition
	if !s.decode(w, r, &def) || tooLong(w, "DESCRIPTION_TOO_LONG", "description", def.Description, MaxDescriptionBytes) {
		return
	}
	out, err := s.eng.PutPipeline(r.Context(), r.PathValue("id"), def)
	answer(s, w, r, http.StatusOK, out, err, wire.Pipeline)
}

func (s *Server) trigger(w http.ResponseWriter, r *http.Request) {
	// The body is {input, failureMode?, priority?, metadata?}; a body without "input" and with
	// other fields than those is taken as the input itself (the seed's curl example).
	var raw json.RawMessage
	if r.ContentLength != 0 && !s.decode(w, r, &raw) {
		return
	}
	var req protocol.TriggerRequest
	if len(raw) > 0 {
		var fields map[string]json.RawMessage
		if json.Unmarshal(raw, &fields) != nil {
			writeErr(w, http.StatusBadRequest, "INVALID_FIELD", "the body must be a JSON object", nil)
			return
		}
		structured := fields["input"] != nil
		if !structured {
			structured = true
			for k := range fields {
				if k != "failureMode" && k != "priority" && k != "metadata" && k != "validationMode" && k != "timeoutMs" {
					structured = false
				}
			}
		}
		if !structured {
			req.Input = raw
		} else if err := json.Unmarshal(raw, &req); err != nil {
			if !badTimeout(w, err) {
				writeErr(w, http.StatusBadRequest, "INVALID_FIELD", "trigger body: "+err.Error(), nil)
			}
			return
		}
	}
	res, err := s.eng.Trigger(r.Context(), r.PathValue("id"), wire.FromTriggerRequest(req))
	if err != nil {
		if !validationFailed(w, err, false) {
			s.fail(w, r, err)
		}
		return
	}
	if !res.Dispatched {
		s.opts.ReadyNow(r.Context())
	}
	writeJSON(w, http.StatusCreated, wire.TriggerResult(res))
}

func (s *Server) runs(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	page, err := s.eng.ListPipelineRuns(r.Context(), engine.RunsFilter{PipelineID: q.Get("pipelineId"), Status: q.Get("status"),
		Cursor: q.Get("cursor"), Limit: limit})
	answer(s, w, r, http.StatusOK, page, err, wire.PipelineRunPage)
}

func (s *Server) idempotencyCheck(w http.ResponseWriter, r *http.Request) {
	var req protocol.IdempotencyCheckRequest
	call, ok := s.decodeWorkerCall(w, r, &req, &req.RunID)
	if !ok {
		return
	}
	res, err := s.eng.CheckIdempotency(r.Context(), call, req.Key)
	s.reply(w, r, http.StatusOK, res, err)
}

func (s *Server) object(w http.ResponseWriter, r *http.Request) {
	obj, err := s.eng.ReadObject(r.Context(), r.URL.Query().Get("backend"), r.PathValue("path"))
	answer(s, w, r, http.StatusOK, obj, err, wire.Object)
}
