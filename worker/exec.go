package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core/apiclient"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	// The SDK links the local driver (standard library only); a worker adds the cloud
	// providers its orchestrator's STORAGE_BACKENDS uses by importing their drivers.
	_ "github.com/pipeweave/pipeweave/core/storage/local"
	"github.com/pipeweave/pipeweave/core/token"
)

// Limits of the calls an attempt makes.
const (
	callbackAttempts     = 6
	callbackBudget       = 3 * time.Minute
	checkTimeout         = 15 * time.Second
	minHeartbeatTimeout  = 10 * time.Second
	maxIdempotencyKeyLen = 255
)

// attempt is one dispatched attempt being executed.
type attempt struct {
	w      *Worker
	t      *task
	d      *protocol.DispatchRequest
	log    *slog.Logger
	cancel context.CancelCauseFunc
	every  time.Duration // heartbeat interval
	// stopTimeout releases the handler's timeout context, if any.
	stopTimeout context.CancelFunc
}

// execute runs one dispatched attempt to its end: hydration, heartbeats, the handler, the
// uploads and the callback, and the removal of its temporary directory. It runs in a "task"
// span, a child of the dispatch's span context parent (when valid).
func (w *Worker) execute(base context.Context, t *task, d *protocol.DispatchRequest, claims token.RunClaims, parent trace.SpanContext) {
	log := withAttrs(w.log, slog.String("run", d.RunID), slog.String("task", d.TaskID), slog.Int("attempt", d.Attempt))
	ctx, cancel := context.WithCancelCause(base)
	defer cancel(nil)
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	ctx, span := w.tracer().Start(ctx, "task", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attribute.String("pipeweave.task.id", d.TaskID), attribute.String("pipeweave.run.id", d.RunID),
		attribute.Int("pipeweave.attempt", d.Attempt)))
	defer span.End()
	if d.PipelineRunID != "" {
		span.SetAttributes(attribute.String("pipeweave.pipeline_run.id", d.PipelineRunID))
	}
	a := &attempt{w: w, t: t, d: d, log: log, cancel: cancel, every: heartbeatEvery(d, t)}
	if d.CodeHash != "" && d.CodeHash != t.hash {
		log.Info("the run was scheduled for other code than this worker's", "runCodeHash", d.CodeHash, "workerCodeHash", t.hash)
	}

	env := newRunEnv(w.tempDir, d.RunID+"-", log)
	ok := false
	defer func() {
		env.close()
		dir := env.madeDir()
		switch {
		case dir == "":
		case ok || w.cleanupOnFailure:
			if err := os.RemoveAll(dir); err != nil {
				log.Warn("could not remove the attempt's temporary directory", "dir", dir, "err", err)
			}
		default:
			log.Info("kept the failed attempt's temporary directory", "dir", dir)
		}
	}()

	hbCtx, stopBeating := context.WithCancel(ctx)
	var hbDone sync.WaitGroup
	hbDone.Go(func() { a.heartbeatLoop(hbCtx) })
	stopHeartbeat := sync.OnceFunc(func() {
		stopBeating()
		hbDone.Wait()
	})
	defer stopHeartbeat()

	c, f := a.hydrate(ctx, env, claims)
	if a.stopTimeout != nil {
		defer a.stopTimeout()
	}
	if f != nil {
		stopHeartbeat()
		a.reportFailure(ctx, *f)
		return
	}

	idemKey := ""
	if t.opts.IdempotencyKey != nil {
		var hit *protocol.IdempotencyCheckResponse
		idemKey, hit, f = a.checkIdempotency(ctx, c.Input)
		switch {
		case f != nil:
			stopHeartbeat()
			a.reportFailure(ctx, *f)
			return
		case cancelled(ctx):
			log.Info("the orchestrator cancelled the attempt before it ran")
			return
		case hit != nil:
			stopHeartbeat()
			log.Info("reusing the result recorded under the idempotency key", "from", hit.RunID)
			ok = a.callback(ctx, protocol.CallbackRequest{Status: protocol.CallbackSuccess,
				OutputPath: hit.OutputPath, OutputSize: hit.OutputSize, Assets: hit.Assets, SelectedNext: hit.SelectedNext})
			return
		}
	}

	out, err := callHandler(t.handler, c, log)
	switch {
	case cancelled(ctx):
		log.Info("the orchestrator cancelled the attempt; nothing is uploaded", "handlerErr", err)
		return
	case err != nil:
		fl := classify(c.Context, err)
		if errors.Is(context.Cause(ctx), errShutdown) {
			fl = failure{code: CodeShutdown, message: "the worker shut down during the attempt: " + fl.message, retryable: true}
		}
		log.Info("the handler failed", "code", fl.code, "retryable", fl.retryable, "err", err)
		stopHeartbeat()
		a.reportFailure(ctx, fl)
		return
	}

	body, f := a.upload(ctx, env, out)
	switch {
	case cancelled(ctx):
		log.Info("the orchestrator cancelled the attempt during the upload")
		return
	case f != nil:
		stopHeartbeat()
		a.reportFailure(ctx, *f)
		return
	}
	body.IdempotencyKey = idemKey
	stopHeartbeat()
	ok = a.callback(ctx, body)
}

// tracer makes the attempts' spans: Config.TracerProvider's, or the global provider's.
func (w *Worker) tracer() trace.Tracer {
	tp := w.cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer("github.com/pipeweave/pipeweave/worker")
}

// heartbeatEvery is the heartbeat interval of an attempt.
func heartbeatEvery(d *protocol.DispatchRequest, t *task) time.Duration {
	switch {
	case d.HeartbeatIntervalMs > 0:
		return time.Duration(d.HeartbeatIntervalMs) * time.Millisecond
	case t.opts.HeartbeatInterval > 0:
		return t.opts.HeartbeatInterval
	default:
		return 60 * time.Second
	}
}

// cancelled reports whether the orchestrator cancelled the attempt.
func cancelled(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrCancelled) }

// hydrate opens the run's storage and loads its input and its predecessors' outputs: from the
// dispatch when the orchestrator sent them inline, else from storage at their paths.
func (a *attempt) hydrate(ctx context.Context, env *runEnv, claims token.RunClaims) (*Context, *failure) {
	d := a.d
	storageFailure := func(err error) *failure {
		return &failure{code: CodeStorage, message: err.Error(), retryable: true}
	}
	backend, err := a.w.backendFor(ctx, d.RunID, claims.Storage)
	if err != nil {
		return nil, storageFailure(err)
	}
	env.backend = backend
	env.progress = a.progress
	input := json.RawMessage("null")
	switch {
	case d.Input != nil:
		input = d.Input
	case d.InputPath != "":
		if input, err = storage.ReadAll(ctx, backend, d.InputPath); err != nil {
			return nil, storageFailure(fmt.Errorf("read the input: %w", err))
		}
	}
	upstream := make(map[string]Upstream, len(d.UpstreamRefs))
	for taskID, ref := range d.UpstreamRefs {
		up := Upstream{OutputPath: ref.OutputPath, Assets: ref.Assets, Output: ref.Output}
		if up.Output == nil && ref.OutputPath != "" {
			if up.Output, err = storage.ReadAll(ctx, backend, ref.OutputPath); err != nil {
				return nil, storageFailure(fmt.Errorf("read the output of upstream task %q: %w", taskID, err))
			}
		}
		upstream[taskID] = up
	}
	hctx := context.Context(ctx)
	if a.t.opts.Timeout > 0 {
		hctx, a.stopTimeout = context.WithTimeout(ctx, a.t.opts.Timeout)
	}
	return &Context{
		Context:          hctx,
		RunID:            d.RunID,
		TaskID:           d.TaskID,
		PipelineRunID:    d.PipelineRunID,
		Attempt:          d.Attempt,
		CodeVersion:      d.CodeVersion,
		CodeHash:         d.CodeHash,
		Input:            input,
		Upstream:         upstream,
		PreviousAttempts: slices.Clone(d.PreviousAttempts),
		r:                env,
	}, nil
}

// backendFor opens (once per configuration) the storage backend sealed in a run token.
func (w *Worker) backendFor(ctx context.Context, runID, sealed string) (*storage.Backend, error) {
	if sealed == "" {
		return nil, errors.New("the run token carries no storage backend")
	}
	plain, err := w.keys.OpenBackend(runID, sealed)
	if err != nil {
		return nil, fmt.Errorf("open the run token's storage backend: %w", err)
	}
	sum := sha256.Sum256(plain)
	w.backendsMu.Lock()
	defer w.backendsMu.Unlock()
	if b, ok := w.backends[sum]; ok {
		return b, nil
	}
	var cfg storage.Config
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return nil, fmt.Errorf("decode the run token's storage backend: %w", err)
	}
	b, err := storage.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open storage backend %q: %w", cfg.ID, err)
	}
	w.backends[sum] = b
	return b, nil
}

// checkIdempotency computes the run's idempotency key and asks the orchestrator for a result
// recorded under it. A failed check is logged and the task runs.
func (a *attempt) checkIdempotency(ctx context.Context, input json.RawMessage) (string, *protocol.IdempotencyCheckResponse, *failure) {
	var key string
	err := protect(func() error {
		key = a.t.opts.IdempotencyKey(input, a.d.CodeVersion)
		return nil
	})
	if err != nil {
		a.log.Error("the idempotency key function panicked", "err", err)
		return "", nil, &failure{code: CodePanic, message: "the idempotency key function: " + err.Error(), retryable: true}
	}
	if key == "" {
		return "", nil, nil
	}
	if len(key) > maxIdempotencyKeyLen {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var res protocol.IdempotencyCheckResponse
	err = a.w.post(cctx, "/api/idempotency/check", a.d.StorageToken, protocol.IdempotencyCheckRequest{RunID: a.d.RunID, Key: key}, &res)
	switch status := apiclient.StatusOf(err); {
	case err == nil && res.Hit:
		return key, &res, nil
	case err == nil:
		return key, nil, nil
	case status == 409 || (status == 404 && !routeMissing(err)):
		a.cancel(ErrCancelled)
		return key, nil, nil
	default:
		a.log.Warn("idempotency check failed; running the task", "err", err)
		return key, nil, nil
	}
}

// routeMissing reports whether err is the orchestrator's answer to an unknown endpoint.
func routeMissing(err error) bool {
	var e *apiclient.Error
	return errors.As(err, &e) && e.Code == "ROUTE_NOT_FOUND"
}

// panicError is a recovered panic.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// protect runs f, turning a panic into a *panicError.
func protect(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return f()
}

// callHandler calls h, turning a panic into a retryable TaskError with code PANIC (the stack
// goes to log).
func callHandler(h Handler, c *Context, log *slog.Logger) (any, error) {
	var out any
	err := protect(func() error {
		var err error
		out, err = h(c)
		return err
	})
	if pe := (*panicError)(nil); errors.As(err, &pe) {
		log.Error("the handler panicked", "panic", fmt.Sprint(pe.value), "stack", string(pe.stack))
		return nil, Retry(CodePanic, pe.Error())
	}
	return out, err
}

// upload stores the output, the assets and the logs of a successful attempt and returns the
// success callback. An output of at most the dispatch's outputInlineMax bytes is not stored:
// the callback carries it.
func (a *attempt) upload(ctx context.Context, env *runEnv, out any) (protocol.CallbackRequest, *failure) {
	output, next, err := encodeResult(out)
	if err != nil {
		return protocol.CallbackRequest{}, &failure{code: CodeInvalidOutput, message: err.Error()}
	}
	runID := a.d.RunID
	body := protocol.CallbackRequest{Status: protocol.CallbackSuccess, SelectedNext: next}
	storageFailure := func(err error) *failure {
		return &failure{code: CodeStorage, message: err.Error(), retryable: true}
	}
	env.mu.Lock()
	assets := maps.Clone(env.assets)
	body.Spawn = slices.Clone(env.spawn)
	env.mu.Unlock()
	if len(assets) > 0 {
		body.Assets = make(map[string]protocol.Asset, len(assets))
	}
	for _, key := range slices.Sorted(maps.Keys(assets)) {
		pa := assets[key]
		path := protocol.AssetPath(runID, key)
		size, err := putFile(ctx, env.backend, path, pa.file, contentTypeOf(pa.typ))
		if err != nil {
			return body, storageFailure(fmt.Errorf("upload asset %q: %w", key, err))
		}
		body.Assets[key] = protocol.Asset{Path: path, Size: size, Type: pa.typ}
	}
	env.close()
	logs, err := env.readLogs()
	if err != nil {
		return body, storageFailure(fmt.Errorf("read the logs: %w", err))
	}
	if len(logs) > 0 {
		if err := storage.PutBytes(ctx, env.backend, protocol.LogsPath(runID), logs, "application/x-ndjson"); err != nil {
			return body, storageFailure(fmt.Errorf("upload the logs: %w", err))
		}
		body.LogsPath = protocol.LogsPath(runID)
	}
	body.OutputPath, body.OutputSize = protocol.OutputPath(runID), int64(len(output))
	if body.OutputSize <= a.d.OutputInlineMax {
		body.Output = output
		return body, nil
	}
	if err := storage.PutBytes(ctx, env.backend, protocol.OutputPath(runID), output, "application/json"); err != nil {
		return body, storageFailure(fmt.Errorf("upload the output: %w", err))
	}
	return body, nil
}

// putFile uploads the file at file to key and returns its size.
func putFile(ctx context.Context, b *storage.Backend, key, file, contentType string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := b.Put(ctx, key, f, storage.PutOptions{ContentType: contentType}); err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// contentTypeOf maps an asset type to a MIME type ("" lets the backend decide).
func contentTypeOf(typ string) string {
	switch typ {
	case AssetJSON:
		return "application/json"
	case AssetText:
		return "text/plain; charset=utf-8"
	default:
		return ""
	}
}

// encodeResult splits a handler's return value into the output's JSON and the successors.
func encodeResult(out any) (json.RawMessage, []string, error) {
	var next []string
	switch r := out.(type) {
	case Result:
		out, next = r.Output, r.RunNext
	case *Result:
		if r != nil {
			out, next = r.Output, r.RunNext
		} else {
			out = nil
		}
	}
	raw, err := encodeJSON(out)
	if err != nil {
		return nil, nil, fmt.Errorf("encode the output: %w", err)
	}
	return raw, slices.Clone(next), nil
}

// encodeJSON encodes v; a json.RawMessage or []byte must already be JSON and is kept as is.
func encodeJSON(v any) (json.RawMessage, error) {
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	case []byte:
		raw = x
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	if raw == nil {
		return json.RawMessage("null"), nil
	}
	if !json.Valid(raw) {
		return nil, errors.New("the value is a json.RawMessage or []byte that is not valid JSON")
	}
	return slices.Clone(raw), nil
}

// heartbeatLoop heartbeats every interval until ctx ends.
func (a *attempt) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(a.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.beat(ctx, "/api/heartbeat", nil, ""); err != nil && ctx.Err() == nil {
				a.log.Warn("heartbeat failed", "err", err)
			}
		}
	}
}

// progress reports progress; it is the runEnv's progress function.
func (a *attempt) progress(ctx context.Context, percent int, message string) error {
	return a.beat(ctx, "/api/progress", &percent, message)
}

// beat sends a heartbeat or a progress report; an answer that the attempt is over cancels it
// (and gives ErrCancelled).
func (a *attempt) beat(ctx context.Context, path string, progress *int, message string) error {
	rctx, cancel := context.WithTimeout(ctx, max(a.every, minHeartbeatTimeout))
	defer cancel()
	var resp protocol.HeartbeatResponse
	err := a.w.post(rctx, path, a.d.StorageToken, protocol.HeartbeatRequest{RunID: a.d.RunID, Progress: progress, Message: message}, &resp)
	status := apiclient.StatusOf(err)
	if (err == nil && resp.ShouldCancel) || status == 409 || (status == 404 && !routeMissing(err)) {
		a.log.Info("the orchestrator says the attempt is over; cancelling it", "status", status)
		a.cancel(ErrCancelled)
		return ErrCancelled
	}
	return err
}

// reportFailure calls back a failed attempt, unless the orchestrator cancelled it.
func (a *attempt) reportFailure(ctx context.Context, f failure) {
	if cancelled(ctx) {
		return
	}
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.String("pipeweave.error_code", f.code))
	span.SetStatus(codes.Error, f.message)
	a.callback(ctx, protocol.CallbackRequest{Status: protocol.CallbackFailed, Error: f.message, ErrorCode: f.code, Retryable: &f.retryable})
}

// callback reports the attempt's end, retrying transient failures; it reports whether the
// orchestrator accepted a success.
func (a *attempt) callback(ctx context.Context, body protocol.CallbackRequest) bool {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callbackBudget)
	defer cancel()
	resp, err := a.w.callbacks.send(cctx, a.d, body)
	switch {
	case err == nil:
		a.log.Debug("called back", "status", body.Status, "applied", resp.Applied, "runStatus", resp.Status)
		return body.Status == protocol.CallbackSuccess
	case apiclient.StatusOf(err) == 409:
		a.log.Info("the callback was refused: the attempt's lease is no longer current", "err", err)
	default:
		a.log.Error("the callback failed", "status", body.Status, "err", err)
	}
	return false
}
