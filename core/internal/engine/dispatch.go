package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/token"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// outcome of one dispatch.
type outcome int

const (
	acked outcome = iota
	backPressure
	dispatchFailed
)

type result struct {
	c       Claimed
	outcome outcome
	err     string // the stored error of a failed dispatch
	// code is the error code of a failed dispatch ("" = DISPATCH_FAILED), final whether its
	// attempt must not be retried, detail the cause for the log (never stored).
	code   string
	final  bool
	detail string
}

// name is the outcome as the metrics and spans label it.
func (o outcome) name() string {
	switch o {
	case acked:
		return telemetry.DispatchAcked
	case backPressure:
		return telemetry.DispatchBackPressure
	}
	return telemetry.DispatchFailed
}

// DispatchStats counts what a dispatch of a batch did.
type DispatchStats struct {
	Dispatched int // workers acknowledged
	Deferred   int // workers pushed back (429/503); the runs wait and keep their attempt
	Failed     int // dispatches that failed; the attempts were retried or failed
}

// Dispatch sends every claimed run to its worker at once and records the answers with one
// statement per kind of answer.
func (e *Engine) Dispatch(ctx context.Context, claimed []Claimed) (DispatchStats, error) {
	var stats DispatchStats
	if len(claimed) == 0 {
		return stats, nil
	}
	results := e.send(ctx, claimed)

	// The answers are recorded even if ctx ended meanwhile: the workers are already working.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var okIDs, boIDs []string
	var okLeases, boLeases []int64
	var f failures
	for _, r := range results {
		switch r.outcome {
		case acked:
			okIDs, okLeases = append(okIDs, r.c.RunID), append(okLeases, r.c.Lease)
		case backPressure:
			boIDs, boLeases = append(boIDs, r.c.RunID), append(boLeases, r.c.Lease)
		case dispatchFailed:
			code := r.code
			if code == "" {
				code = protocol.CodeDispatchFailed
			}
			f.addFinal(r.c.RunID, r.c.Lease, r.c.PipelineRunID, r.err, code, r.final)
			detail := r.detail
			if detail == "" {
				detail = r.err
			}
			e.log.Warn("dispatch failed", "run", r.c.RunID, "task", r.c.TaskID, "attempt", r.c.Attempt, "code", code, "err", detail)
		}
	}
	stats.Dispatched, stats.Deferred, stats.Failed = len(okIDs), len(boIDs), len(f.ids)
	if len(okIDs) > 0 && e.deferAcks(okIDs, okLeases) {
		okIDs, okLeases = nil, nil // the next group commit records them (acks.go)
	}
	if len(okIDs)+len(boIDs) > 0 {
		// Losing these in a database crash only means the sweep treats the dispatches as failed
		// once their lease expires, so the commit does not wait for the WAL flush and the rows
		// are locked for as short a time as possible. The statements go as one batch, one
		// implicit transaction (database.Pipelined): one round trip.
		err := e.db.Pipelined(rctx, func(tx dbtx) error {
			if err := queries.AsyncCommit(rctx, tx); err != nil {
				return err
			}
			if len(okIDs) > 0 {
				if err := queries.MarkRunning(rctx, tx, dbsqlc.MarkRunningParams{IDs: okIDs, Leases: okLeases}); err != nil {
					return err
				}
			}
			if len(boIDs) > 0 {
				if err := queries.BackOff(rctx, tx, dbsqlc.BackOffParams{IDs: boIDs, Leases: boLeases,
					DelayMs: e.cfg.BackPressureDelay.Milliseconds()}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return stats, fmt.Errorf("record dispatch results: %w", err)
		}
		e.acked(dbsqlc.MarkRunningParams{IDs: okIDs})
		for _, id := range boIDs {
			e.cfg.Signals.RunStatus.Send(RunStatus{ID: id, Status: protocol.StatusPending})
		}
	}
	if len(f.ids) > 0 {
		if _, err := e.failAndAdvance(rctx, f); err != nil {
			return stats, fmt.Errorf("record failed dispatches: %w", err)
		}
	}
	if len(boIDs)+len(f.ids) > 0 {
		// Runs left the in-flight states: that may end waiting_for_maintenance.
		e.settleIfWaiting(rctx)
	}
	return stats, nil
}

// upstreamOf makes the upstream refs of a claimed run's dispatch from the outputs of its
// completed predecessors that its claim returned, one aggregate per column over the same rows
// (nil when there are none).
func upstreamOf(r dbsqlc.ClaimRow) (map[string]protocol.UpstreamRef, error) {
	n := len(r.UpTaskIds)
	if n == 0 {
		return nil, nil
	}
	out := make(map[string]protocol.UpstreamRef, n)
	for i, task := range r.UpTaskIds {
		ref := protocol.UpstreamRef{OutputPath: r.UpOutputPaths[i], Output: r.UpOutputs[i]}
		if len(r.UpAssets[i]) > 0 {
			if err := json.Unmarshal(r.UpAssets[i], &ref.Assets); err != nil {
				return nil, fmt.Errorf("assets of %s: %w", task, err)
			}
			wireAssets(ref.Assets)
		}
		out[task] = ref
	}
	return out, nil
}

// dispatchOne posts one claimed run to its worker, in a "dispatch" span that is a child of the
// run's stored trace context and whose context the request carries (traceparent, tracestate).
// With tracing off it starts no span and passes the stored traceparent on as it is.
func (e *Engine) dispatchOne(ctx context.Context, c Claimed) (res result) {
	span := trace.SpanFromContext(context.Background()) // a no-op span unless tracing is on
	if e.tracing {
		ctx, span = e.startDispatchSpan(ctx, c)
		defer func() { endDispatchSpan(span, res) }()
	}
	tok, err := e.runToken(c)
	if err != nil {
		return e.failDispatch(c, telemetry.ReasonToken, "could not make the run token: "+err.Error())
	}
	body, err := json.Marshal(e.dispatchRequest(c, tok))
	if err != nil {
		return e.failDispatch(c, telemetry.ReasonEncode, "encode dispatch: "+err.Error())
	}
	if err := checkBaseURL(c.BaseURL); err != nil {
		return e.badBaseURL(c, err)
	}
	dctx, cancel := context.WithTimeout(ctx, e.cfg.DispatchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(dctx, http.MethodPost, c.BaseURL+"/tasks/"+c.TaskID, bytes.NewReader(body))
	if err != nil {
		return e.failDispatch(c, telemetry.ReasonEncode, "build dispatch request: "+err.Error())
	}
	req.Header.Set("Content-Type", "application/json")
	if e.tracing {
		telemetry.Propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	} else if c.Traceparent != "" {
		req.Header.Set("traceparent", c.Traceparent)
	}
	start := time.Now()
	out := e.post(req, c, span)
	e.metrics.DispatchDuration.WithLabelValues(out.outcome.name()).Observe(time.Since(start).Seconds())
	return out
}

// startDispatchSpan starts the "dispatch" span of c (tracing on), a child of the run's stored
// trace context, with extra attributes besides the run's.
func (e *Engine) startDispatchSpan(ctx context.Context, c Claimed, extra ...attribute.KeyValue) (context.Context, trace.Span) {
	pctx, _ := telemetry.WithTraceparent(ctx, c.Traceparent)
	attrs := append([]attribute.KeyValue{telemetry.AttrTaskID.String(c.TaskID), telemetry.AttrRunID.String(c.RunID),
		telemetry.AttrAttempt.Int(c.Attempt)}, extra...)
	if c.PipelineRunID != "" {
		attrs = append(attrs, telemetry.AttrPipelineRunID.String(c.PipelineRunID))
	}
	return e.tracer.Start(pctx, "dispatch", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endDispatchSpan records the dispatch's outcome r on span and ends it.
func endDispatchSpan(span trace.Span, r result) {
	span.SetAttributes(telemetry.AttrOutcome.String(r.outcome.name()))
	if r.outcome == dispatchFailed {
		span.SetStatus(codes.Error, r.err)
	}
	span.End()
}

// dispatchRequest is the dispatch of c, with its run token tok.
func (e *Engine) dispatchRequest(c Claimed, tok string) protocol.DispatchRequest {
	return protocol.DispatchRequest{
		RunID:               c.RunID,
		TaskID:              c.TaskID,
		PipelineRunID:       c.PipelineRunID,
		Attempt:             c.Attempt,
		CodeVersion:         c.CodeVersion,
		CodeHash:            c.CodeHash,
		StorageToken:        tok,
		InputPath:           c.InputPath,
		UpstreamRefs:        nonNilMap(c.Upstream),
		PreviousAttempts:    nonNil(c.PreviousAttempts),
		HeartbeatIntervalMs: c.HeartbeatIntervalMs,
		Input:               c.Input,
		OutputInlineMax:     e.cfg.InlineMax,
		CallbackBatchMax:    e.callbackBatchMax(),
	}
}

// callbackBatchMax is the dispatch's callbackBatchMax: none in compat mode, whose dispatches
// are upstream's.
func (e *Engine) callbackBatchMax() int {
	if e.cfg.Compat {
		return 0
	}
	return MaxCallbacksPerRequest
}

// failDispatch is the result of a dispatch of c that failed for reason, counted by it.
func (e *Engine) failDispatch(c Claimed, reason, msg string) result {
	e.metrics.DispatchFailures.WithLabelValues(reason).Inc()
	return result{c: c, outcome: dispatchFailed, err: msg}
}

// post sends a dispatch request and tells its outcome from the worker's answer, counting a
// failure by its reason.
func (e *Engine) post(req *http.Request, c Claimed, span trace.Span) result {
	resp, err := e.client.Do(req)
	if err != nil {
		span.RecordError(err)
		return e.transportFailure(c, err)
	}
	// Drain a little so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	return e.statusResult(c, resp.StatusCode, resp.Status, resp.Header.Get("Location"))
}

// statusResult tells a dispatch's outcome from the worker's answer status (text: the status
// line's, as "404 Not Found"; location: a redirect's Location), counting a failure by its
// reason.
func (e *Engine) statusResult(c Claimed, code int, text, location string) result {
	switch {
	case code >= 200 && code < 300:
		return result{c: c, outcome: acked}
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return result{c: c, outcome: backPressure}
	case code >= 400 && code < 500:
		return e.failDispatch(c, telemetry.ReasonStatus4xx, fmt.Sprintf("worker answered %s", text))
	case code >= 500:
		return e.failDispatch(c, telemetry.ReasonStatus5xx, fmt.Sprintf("worker answered %s", text))
	case code >= 300 && code < 400:
		r := e.failDispatch(c, telemetry.ReasonStatus, fmt.Sprintf("worker answered %s; redirects are not followed", text))
		r.detail = r.err + " (Location: " + location + ")"
		return r
	}
	return e.failDispatch(c, telemetry.ReasonStatus, fmt.Sprintf("worker answered %s", text))
}

// nonNilMap is m, or an empty map for nil (encoded {} rather than null).
func nonNilMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// runToken makes the dispatch's storageToken for c: signed under the current secret's run-token
// key, which no worker holds, with the backend sealed for the task's service (its key under the
// secret it registered with while that one is configured, else under the current one).
func (e *Engine) runToken(c Claimed) (string, error) {
	if e.cfg.Compat {
		return token.SealCompat(e.cfg.Secret, e.backend)
	}
	sto, err := e.keys.SealBackend(c.KeyID, c.ServiceID, c.RunID, e.backend)
	if err != nil {
		return "", err
	}
	now := time.Now()
	// Valid past the task's timeout, so a worker can report even at the very end.
	exp := now.Add(time.Duration(c.TimeoutSeconds)*time.Second + e.cfg.DispatchTimeout + 5*time.Minute)
	return e.keys.SignRun(token.RunClaims{
		RunID: c.RunID, TaskID: c.TaskID, Attempt: c.Attempt, Lease: c.Lease,
		IssuedAt: now, ExpiresAt: exp, Storage: sto,
	})
}

// Process does one bounded batch: sweep, then claim and dispatch up to limit runs, then send up
// to limit due webhook deliveries, within budget (0 = no time bound; DeliverWebhooks says how
// the deliveries keep to what is left of it).
func (e *Engine) Process(ctx context.Context, limit int, budget time.Duration) (ProcessSummary, error) {
	start := time.Now()
	if limit <= 0 {
		limit = e.cfg.ClaimBatch
	}
	var s ProcessSummary
	var err error
	if s.Swept, err = e.Sweep(ctx, 0); err != nil {
		return s, err
	}
	// Claim and dispatch in chunks until limit runs are claimed, the queue has nothing more
	// ready, or the budget is spent.
	for s.Claimed < limit && (budget <= 0 || time.Since(start) < budget) {
		chunk := min(limit-s.Claimed, maxClaimChunk)
		claimed, err := e.Claim(ctx, chunk)
		if err != nil {
			return s, err
		}
		s.Claimed += len(claimed)
		stats, err := e.Dispatch(ctx, claimed)
		s.Dispatched += stats.Dispatched
		s.Failed += stats.Failed
		if err != nil {
			return s, err
		}
		if len(claimed) < chunk {
			break
		}
	}
	// Then the due webhook deliveries, within what is left of the budget (at least one claim of
	// them, so that a batch that spent its budget on runs still sends some).
	left := time.Duration(0)
	if budget > 0 {
		left = max(budget-time.Since(start), time.Millisecond)
	}
	wh, err := e.DeliverWebhooks(ctx, limit, left)
	s.WebhookDeliveries = wh.Delivered + wh.Failed + wh.Dead
	if err != nil {
		return s, err
	}
	s.DurationMs = time.Since(start).Milliseconds()
	return s, nil
}

// maxClaimChunk bounds one claim of Process: larger batches are claimed in several.
const maxClaimChunk = 200

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }

// deref is *p, or the zero value for nil.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
