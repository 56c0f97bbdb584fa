package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// WorkerCall identifies the attempt a worker call speaks for: the run and the lease from its run
// token. Lease is nil for unauthenticated compat workers, whose calls apply to the current lease.
type WorkerCall struct {
	RunID string
	Lease *int64
	// spawn is the checked spawn of a success callback (spawn.go; nil: none).
	spawn *spawnPlan
	// gate, for a callback of a batch request, queues it with the request's others (its
	// index gateIndex); nil: alone.
	gate      *callbackGate
	gateIndex int
}

// lease is the lease the call speaks for, anyLease for a compat worker's call.
func (c WorkerCall) lease() int64 {
	if c.Lease == nil {
		return anyLease
	}
	return *c.Lease
}

// assetsJSON is a success callback's assets as the column stores them (nil for none).
func assetsJSON(cb *protocol.CallbackRequest) ([]byte, error) {
	if len(cb.Assets) == 0 {
		return nil, nil
	}
	raw, err := json.Marshal(cb.Assets)
	if err != nil {
		return nil, invalid("INVALID_ASSETS", "assets: %v", err)
	}
	return raw, nil
}

// runState reads a run's status and lease after a fenced update matched nothing, to tell a
// stale lease (409) from an unknown run (404) and from an already applied call.
func (e *Engine) runState(ctx context.Context, db dbtx, runID string) (status protocol.TaskRunStatus, lease int64, err error) {
	st, err := queries.RunState(ctx, db, runID)
	if errors.Is(err, database.ErrNotFound) {
		return "", 0, notFound("RUN_NOT_FOUND", "task run %q not found", runID)
	}
	if err != nil {
		return "", 0, fmt.Errorf("read run %s: %w", runID, err)
	}
	return st.Status, st.Lease, nil
}

func staleLease(runID string) *Error {
	return conflict("STALE_LEASE", "the lease of this attempt of run %q is no longer current", runID)
}

// Heartbeat pushes the attempt's deadline to now + 2 × heartbeatIntervalMs and records progress.
// It returns shouldCancel: true when the run was cancelled or is no longer running; a stale
// lease gives ErrConflict (with shouldCancel true for the caller to report).
func (e *Engine) Heartbeat(ctx context.Context, call WorkerCall, progress *int, message string) (_ protocol.HeartbeatResponse, err error) {
	if e.tracing {
		var span trace.Span
		ctx, span = e.tracer.Start(ctx, "heartbeat", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(telemetry.AttrRunID.String(call.RunID)))
		defer func() { endSpan(span, err) }()
	}
	if progress != nil && (*progress < 0 || *progress > 100) {
		return protocol.HeartbeatResponse{}, invalid("INVALID_PROGRESS", "progress must be between 0 and 100")
	}
	var msg *string
	if message != "" {
		msg = &message
	}
	_, err = queries.Heartbeat(ctx, e.db, dbsqlc.HeartbeatParams{ID: call.RunID, Lease: call.Lease, Progress: progress, Message: msg})
	if err == nil {
		return protocol.HeartbeatResponse{Acknowledged: true}, nil
	}
	if !errors.Is(err, database.ErrNotFound) {
		return protocol.HeartbeatResponse{}, fmt.Errorf("heartbeat %s: %w", call.RunID, err)
	}
	status, lease, err := e.runState(ctx, e.db, call.RunID)
	if err != nil {
		return protocol.HeartbeatResponse{}, err
	}
	if call.Lease != nil && *call.Lease != lease {
		return protocol.HeartbeatResponse{ShouldCancel: true}, staleLease(call.RunID)
	}
	// The attempt is over (cancelled, or already reported): the worker should stop.
	return protocol.HeartbeatResponse{Acknowledged: status == protocol.StatusCancelled, ShouldCancel: true}, nil
}

// CallbackResult says what a callback did.
type CallbackResult struct {
	// Applied is false for a duplicate of a callback already applied.
	Applied bool
	// Status is the run's status after the call.
	Status protocol.TaskRunStatus
	// Readied: the callback advanced its pipeline run and made a successor pending.
	Readied bool
	// Refilled: the transaction that applied the callback also claimed the places it freed,
	// for the dispatcher set with SetRefill; nobody need claim for them.
	Refilled bool

	// What an applied callback ended, for the metrics.
	taskID  string
	seconds float64
	ended   []endedAttempt
}

// endSpan ends span, marking it failed when err is not nil.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Callback applies a worker's report of its attempt: success completes the run; failure retries
// it or fails it into the DLQ. For a task of a pipeline run, the run advances in the same
// transaction. Callbacks arriving together are applied together (a group commit,
// groupcommit.go); each returns only after the transaction that applied it committed. A
// duplicate of an applied callback changes nothing; a stale lease gives ErrConflict; an unknown
// run ErrNotFound. It runs in a "callback" span, a child of the trace context in ctx (the
// worker's traceparent).
func (e *Engine) Callback(ctx context.Context, call WorkerCall, cb *protocol.CallbackRequest) (res CallbackResult, err error) {
	if e.tracing {
		var span trace.Span
		ctx, span = e.tracer.Start(ctx, "callback", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(telemetry.AttrRunID.String(call.RunID), telemetry.AttrStatus.String(cb.Status)))
		defer func() {
			if res.taskID != "" {
				span.SetAttributes(telemetry.AttrTaskID.String(res.taskID))
			}
			span.SetAttributes(telemetry.AttrApplied.Bool(res.Applied), telemetry.AttrOutcome.String(string(res.Status)))
			endSpan(span, err)
		}()
	}
	res, err = e.callback(ctx, call, cb)
	if err == nil && res.Applied {
		outcome := protocol.StatusCompleted
		if res.Status != protocol.StatusCompleted && res.Status != protocol.StatusWaiting {
			outcome = protocol.StatusFailed
		}
		e.metrics.TaskDuration.WithLabelValues(res.taskID, string(outcome)).Observe(res.seconds)
		e.countEnded(res.ended)
		e.cfg.Signals.RunStatus.Send(RunStatus{ID: call.RunID, Status: res.Status})
		// The attempt is over: it may have been the last in flight before maintenance.
		e.settleIfWaiting(ctx)
	}
	return res, err
}

// MaxCallbacksPerRequest caps the callbacks of one CallbackMany (POST /api/callbacks): one
// group commit's worth.
const MaxCallbacksPerRequest = maxCallbackBatch

// CallbackMany applies callbacks of several runs as Callback applies each (calls[i] reports
// cbs[i]), checking each on its own and applying those that pass together, in one group
// commit when they fit in one. It returns when each has committed or failed, with each one's
// answer and error by index.
// ctxs[i] is the context of callback i (its trace context), derived from the request's.
func (e *Engine) CallbackMany(ctxs []context.Context, calls []WorkerCall, cbs []*protocol.CallbackRequest) ([]CallbackResult, []error) {
	res, errs := make([]CallbackResult, len(calls)), make([]error, len(calls))
	gate := newCallbackGate(len(calls))
	var wg sync.WaitGroup
	for i := range calls {
		call := calls[i]
		call.gate, call.gateIndex = gate, i
		wg.Go(func() {
			// A callback refused before its group commit leaves the gate here.
			defer gate.arrive(&e.callbacks, i, nil)
			res[i], errs[i] = e.Callback(ctxs[i], call, cbs[i])
		})
	}
	wg.Wait()
	return res, errs
}

func (e *Engine) callback(ctx context.Context, call WorkerCall, cb *protocol.CallbackRequest) (CallbackResult, error) {
	switch cb.Status {
	case protocol.CallbackSuccess, protocol.CallbackFailed:
	default:
		return CallbackResult{}, invalid("INVALID_STATUS", "status must be %q or %q", protocol.CallbackSuccess, protocol.CallbackFailed)
	}
	if cb.OutputSize < 0 {
		return CallbackResult{}, invalid("INVALID_OUTPUT_SIZE", "outputSize must not be negative")
	}
	if len(cb.IdempotencyKey) > maxKeyLen {
		return CallbackResult{}, invalid("INVALID_IDEMPOTENCY_KEY", "idempotencyKey must be at most %d bytes", maxKeyLen)
	}
	if cb.Status == protocol.CallbackSuccess {
		if err := e.checkInlineOutput(call.RunID, cb); err != nil {
			return CallbackResult{}, err
		}
		if err := e.checkCallbackPaths(ctx, call.RunID, cb); err != nil {
			// An unknown run is answered 404 whatever its paths.
			if _, _, serr := e.runState(ctx, e.db, call.RunID); errors.Is(serr, ErrNotFound) {
				return CallbackResult{}, serr
			}
			return CallbackResult{}, err
		}
		if len(cb.Spawn) > 0 {
			plan, err := e.checkSpawn(ctx, call.RunID, cb)
			if err != nil {
				return CallbackResult{}, err
			}
			call.spawn = plan
		}
	}
	res, err := e.groupCallback(ctx, call, cb)
	if call.spawn != nil {
		e.dropUnspawned(ctx, call.spawn, err)
	}
	return res, err
}

// completion is what Complete answered, when it ran ahead of callbackIn (in the batch that
// locked the pipeline runs).
type completion struct {
	row dbsqlc.CompleteRow
	err error
}

// completeParams are the arguments of Complete for a success callback.
func completeParams(call WorkerCall, cb *protocol.CallbackRequest) (dbsqlc.CompleteParams, error) {
	assets, err := assetsJSON(cb)
	if err != nil {
		return dbsqlc.CompleteParams{}, err
	}
	return dbsqlc.CompleteParams{ID: call.RunID, Lease: call.Lease,
		OutputPath: nonEmpty(cb.OutputPath), Output: cb.Output, OutputSize: nilIfZero(cb.OutputSize), Assets: assets,
		LogsPath: nonEmpty(cb.LogsPath), SelectedNext: cb.SelectedNext}, nil
}

// callbackIn applies a callback on db; run is the locked pipeline run of the task run, if any,
// and done what Complete answered when it already ran for this success callback (else nil).
// last says that nothing follows in db's transaction: the advance may then commit it.
func (e *Engine) callbackIn(ctx context.Context, db dbtx, call WorkerCall, cb *protocol.CallbackRequest, run *lockedRun, done *completion, last bool) (CallbackResult, error) {
	if run != nil && cb.Status == protocol.CallbackSuccess && len(cb.SelectedNext) > 0 {
		var allowed []string
		raw, err := queries.AllowedNextOfRun(ctx, db, call.RunID)
		if err == nil {
			err = json.Unmarshal(raw, &allowed)
		}
		if err != nil {
			return CallbackResult{}, fmt.Errorf("read allowedNext of %s: %w", call.RunID, err)
		}
		for _, name := range cb.SelectedNext {
			if !slices.Contains(allowed, name) {
				// The task chose a successor it may not: its attempt fails, for good.
				cb = &protocol.CallbackRequest{Status: protocol.CallbackFailed, ErrorCode: "INVALID_SELECTED_NEXT", Retryable: new(bool),
					Error: fmt.Sprintf("selectedNext names %q, which is not in allowedNext %v", name, allowed)}
				break
			}
		}
	}
	var taskID string
	var status protocol.TaskRunStatus
	var seconds float64
	var endedAttempts []endedAttempt
	applied := false
	if cb.Status == protocol.CallbackFailed {
		msg := cb.Error
		if msg == "" {
			msg = "task failed"
		}
		retryable := cb.Retryable == nil || *cb.Retryable
		var f failures
		f.addFinal(call.RunID, call.lease(), "", msg, cb.ErrorCode, !retryable)
		ended, err := e.failAttempts(ctx, db, f, false)
		if err != nil {
			return CallbackResult{}, err
		}
		if len(ended) == 1 {
			applied, status = true, ended[0].Status
			taskID, seconds, endedAttempts = ended[0].TaskID, ended[0].Seconds, ended
			if run != nil {
				if err := e.advanceFailed(ctx, db, map[string]*lockedRun{run.id: run}, ended); err != nil {
					return CallbackResult{}, err
				}
			}
		}
	} else {
		if call.spawn != nil && call.spawn.mapItem && done == nil {
			// A map item's spawn past its map's maxItems is refused before anything is written.
			if err := checkMapGrowth(ctx, db, run, call.spawn); err != nil {
				return CallbackResult{}, err
			}
		}
		if done == nil {
			p, err := completeParams(call, cb)
			if err != nil {
				return CallbackResult{}, err
			}
			done = &completion{}
			done.row, done.err = queries.Complete(ctx, db, p)
		}
		err := done.err
		switch {
		case errors.Is(err, database.ErrNotFound):
		case err != nil:
			return CallbackResult{}, fmt.Errorf("complete run %s: %w", call.RunID, err)
		default:
			applied, status, taskID, seconds = true, protocol.StatusCompleted, done.row.TaskID, done.row.Seconds
			if cb.IdempotencyKey != "" {
				if err := e.recordIdempotency(ctx, db, call.RunID, cb.IdempotencyKey); err != nil {
					return CallbackResult{}, err
				}
			}
			res := resolution{taskID: taskID, completed: true, selected: cb.SelectedNext, runID: call.RunID}
			spawned := false
			if call.spawn != nil {
				// A spawn node's run: its row waits for the runs it spawned (spawn.go).
				if spawned, err = e.startSpawned(ctx, db, run, call.RunID, call.spawn); err != nil {
					return CallbackResult{}, err
				}
			}
			switch {
			case spawned:
				status = protocol.StatusWaiting
			case run != nil && run.deferItems:
				run.items = append(run.items, res)
			case run != nil:
				if err := e.advance(ctx, db, run, []resolution{res}, last); err != nil {
					return CallbackResult{}, err
				}
			}
		}
	}
	if applied {
		return CallbackResult{Applied: true, Status: status, taskID: taskID, seconds: seconds, ended: endedAttempts}, nil
	}
	st, lease, err := e.runState(ctx, db, call.RunID)
	if err != nil {
		return CallbackResult{}, err
	}
	if call.Lease != nil && *call.Lease != lease {
		return CallbackResult{}, staleLease(call.RunID)
	}
	return CallbackResult{Applied: false, Status: st}, nil
}

// checkInlineOutput checks the output a success callback of run runID sends inline: at most
// InlineMax bytes (413 OUTPUT_TOO_LARGE; with inline payloads off, any is too large), under the
// run's own output path, and outputSize, when given, its length (400). A success without an
// inline output passes; a failure's output is dropped.
func (e *Engine) checkInlineOutput(runID string, cb *protocol.CallbackRequest) error {
	if cb.Output == nil {
		return nil
	}
	n := int64(len(cb.Output))
	switch own := protocol.OutputPath(runID); {
	case n > e.cfg.InlineMax:
		return &Error{Kind: ErrTooLarge, Code: "OUTPUT_TOO_LARGE", Msg: fmt.Sprintf(
			"the inline output has %d bytes; at most %d (the dispatch's outputInlineMax) are accepted inline: write it to storage at %s and send its outputPath",
			n, e.cfg.InlineMax, own), Details: map[string]any{"field": "output", "limit": e.cfg.InlineMax}}
	case cb.OutputPath != own:
		return badPath("outputPath", fmt.Sprintf("an inline output is sent with the run's own outputPath %q, got %q", own, cb.OutputPath))
	case cb.OutputSize != 0 && cb.OutputSize != n:
		return invalid("INVALID_OUTPUT_SIZE", "outputSize is %d but the inline output has %d bytes", cb.OutputSize, n)
	}
	cb.OutputSize = n
	return nil
}

func nilIfZero(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}
