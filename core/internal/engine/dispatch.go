package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/core/storage"
	"github.com/pipeweave/pipeweave/core/token"
)

var (
	sqlClaim        = q("claim")
	sqlMarkRunning  = q("mark_running")
	sqlBackOff      = q("back_off")
	sqlFailAttempts = q("fail_attempts")
	sqlSweep        = q("sweep")
	sqlFoldDeltas   = q("fold_status_deltas")
)

// claimLock serialises claims across every instance, so that the in-flight counts a claim reads
// include every earlier claim and concurrency limits hold ("pipeweave/claim").
const claimLock int64 = 0x7077636c61696d

// Claimed is a run taken for dispatch, with everything the dispatch needs.
type Claimed struct {
	RunID               string
	TaskID              string
	PipelineRunID       string
	Attempt             int
	Lease               int64
	CodeVersion         int
	CodeHash            string
	InputPath           string
	PreviousAttempts    []protocol.Attempt
	HeartbeatIntervalMs int64
	TimeoutSeconds      int
	BaseURL             string
	Priority            int
	// ServiceID is the service that registered the task, and KeyID the key id of the master
	// secret it registered with ("" if unknown): its dispatches are sealed for that service.
	ServiceID string
	KeyID     string
	// Traceparent is the W3C trace context the run continues ("" = none): its dispatch span is
	// a child of it.
	Traceparent string
}

// Claim takes up to limit ready runs (lower priority first, then oldest), moving them to
// dispatching under a new lease. It never exceeds MaxConcurrency or a task's concurrency, however
// many instances claim at once.
func (e *Engine) Claim(ctx context.Context, limit int) ([]Claimed, error) {
	if limit <= 0 {
		limit = e.cfg.ClaimBatch
	}
	lease := e.cfg.DispatchTimeout + 10*time.Second
	start := time.Now()
	var out []Claimed
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		// Claims serialise on this lock until they commit, so the commit must be quick: it does
		// not wait for the WAL flush. Should the database crash before the flush, the claim is
		// lost with it and the run is claimed again; the worker's calls for the lost lease get 409.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1), set_config('synchronous_commit', 'off', true)", claimLock); err != nil {
			return fmt.Errorf("take claim lock: %w", err)
		}
		rows, err := tx.Query(ctx, sqlClaim, limit, e.cfg.MaxConcurrency, lease.Milliseconds())
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Claimed, error) {
			var c Claimed
			var prev []byte
			if err := row.Scan(&c.RunID, &c.TaskID, &c.PipelineRunID, &c.Attempt, &c.Lease, &c.CodeVersion,
				&c.CodeHash, &c.InputPath, &prev, &c.HeartbeatIntervalMs, &c.TimeoutSeconds, &c.BaseURL, &c.Priority,
				&c.Traceparent, &c.ServiceID, &c.KeyID); err != nil {
				return c, err
			}
			return c, json.Unmarshal(prev, &c.PreviousAttempts)
		})
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		return nil
	})
	e.claimSpan(ctx, start, limit, out, err)
	if err != nil {
		return nil, err
	}
	e.metrics.Claims.Add(float64(len(out)))
	return out, nil
}

// claimSpan records a "claim" span for a claim that took runs or failed (an empty claim, which
// an idle loop makes at every tick, leaves no span). It is a root linked to the trace of each
// claimed run: one claim serves many traces.
func (e *Engine) claimSpan(ctx context.Context, start time.Time, limit int, claimed []Claimed, err error) {
	if !e.tracing || (len(claimed) == 0 && err == nil) {
		return
	}
	links := make([]trace.Link, 0, len(claimed))
	for _, c := range claimed {
		if sc := telemetry.SpanContextOf(c.Traceparent); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{telemetry.AttrRunID.String(c.RunID)}})
		}
	}
	_, span := e.tracer.Start(telemetry.WithoutSpan(ctx), "claim", trace.WithNewRoot(), trace.WithTimestamp(start),
		trace.WithLinks(links...), trace.WithAttributes(telemetry.AttrCount.Int(len(claimed)), attribute.Int("pipeweave.limit", limit)))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "claim failed")
	}
	span.End()
}

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
	refs, err := e.upstreamRefs(ctx, claimed)
	if err != nil {
		// The runs stay claimed; the sweep retries them when their dispatch lease expires.
		return stats, err
	}
	results := make([]result, len(claimed))
	var wg sync.WaitGroup
	for i := range claimed {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = e.dispatchOne(ctx, claimed[i], refs[claimed[i].RunID])
		}(i)
	}
	wg.Wait()

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
			lease := r.c.Lease
			code := r.code
			if code == "" {
				code = protocol.CodeDispatchFailed
			}
			f.addFinal(r.c.RunID, &lease, r.c.PipelineRunID, r.err, code, r.final)
			detail := r.detail
			if detail == "" {
				detail = r.err
			}
			e.log.Warn("dispatch failed", "run", r.c.RunID, "task", r.c.TaskID, "attempt", r.c.Attempt, "code", code, "err", detail)
		}
	}
	stats.Dispatched, stats.Deferred, stats.Failed = len(okIDs), len(boIDs), len(f.ids)
	if len(okIDs)+len(boIDs) > 0 {
		// Losing these in a database crash only means the sweep treats the dispatches as failed
		// once their lease expires, so the commit does not wait for the WAL flush and the rows
		// are locked for as short a time as possible.
		err := pgx.BeginFunc(rctx, e.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(rctx, "SELECT set_config('synchronous_commit', 'off', true)"); err != nil {
				return err
			}
			if len(okIDs) > 0 {
				if _, err := tx.Exec(rctx, sqlMarkRunning, okIDs, okLeases); err != nil {
					return err
				}
			}
			if len(boIDs) > 0 {
				if _, err := tx.Exec(rctx, sqlBackOff, boIDs, boLeases, e.cfg.BackPressureDelay.Milliseconds()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return stats, fmt.Errorf("record dispatch results: %w", err)
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

// upstreamRefs reads, for the claimed runs that belong to a pipeline run, the outputs of their
// completed predecessors, with one query for the batch.
func (e *Engine) upstreamRefs(ctx context.Context, claimed []Claimed) (map[string]map[string]protocol.UpstreamRef, error) {
	var runIDs []string
	for _, c := range claimed {
		if c.PipelineRunID != "" {
			runIDs = append(runIDs, c.RunID)
		}
	}
	out := map[string]map[string]protocol.UpstreamRef{}
	if len(runIDs) == 0 {
		return out, nil
	}
	rows, err := e.pool.Query(ctx, sqlUpstreamRefs, runIDs)
	if err != nil {
		return nil, fmt.Errorf("read upstream outputs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var runID, taskID, outputPath string
		var assets []byte
		if err := rows.Scan(&runID, &taskID, &outputPath, &assets); err != nil {
			return nil, fmt.Errorf("read upstream outputs: %w", err)
		}
		ref := protocol.UpstreamRef{OutputPath: outputPath}
		if len(assets) > 0 {
			if err := json.Unmarshal(assets, &ref.Assets); err != nil {
				return nil, fmt.Errorf("read upstream outputs: assets of %s: %w", taskID, err)
			}
			wireAssets(ref.Assets)
		}
		if out[runID] == nil {
			out[runID] = map[string]protocol.UpstreamRef{}
		}
		out[runID][taskID] = ref
	}
	return out, rows.Err()
}

// dispatchOne posts one claimed run to its worker, in a "dispatch" span that is a child of the
// run's stored trace context and whose context the request carries (traceparent, tracestate).
// With tracing off it starts no span and passes the stored traceparent on as it is.
func (e *Engine) dispatchOne(ctx context.Context, c Claimed, upstream map[string]protocol.UpstreamRef) (res result) {
	span := trace.SpanFromContext(context.Background()) // a no-op span unless tracing is on
	if e.tracing {
		pctx, _ := telemetry.WithTraceparent(ctx, c.Traceparent)
		attrs := []attribute.KeyValue{telemetry.AttrTaskID.String(c.TaskID), telemetry.AttrRunID.String(c.RunID),
			telemetry.AttrAttempt.Int(c.Attempt)}
		if c.PipelineRunID != "" {
			attrs = append(attrs, telemetry.AttrPipelineRunID.String(c.PipelineRunID))
		}
		ctx, span = e.tracer.Start(pctx, "dispatch", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
		defer func() {
			span.SetAttributes(telemetry.AttrOutcome.String(res.outcome.name()))
			if res.outcome == dispatchFailed {
				span.SetStatus(codes.Error, res.err)
			}
			span.End()
		}()
	}
	tok, err := e.runToken(c)
	if err != nil {
		return e.failDispatch(c, telemetry.ReasonToken, "could not make the run token: "+err.Error())
	}
	body, err := json.Marshal(protocol.DispatchRequest{
		RunID:               c.RunID,
		TaskID:              c.TaskID,
		PipelineRunID:       c.PipelineRunID,
		Attempt:             c.Attempt,
		CodeVersion:         c.CodeVersion,
		CodeHash:            c.CodeHash,
		StorageToken:        tok,
		InputPath:           c.InputPath,
		UpstreamRefs:        nonNilMap(upstream),
		PreviousAttempts:    nonNil(c.PreviousAttempts),
		HeartbeatIntervalMs: c.HeartbeatIntervalMs,
	})
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
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return result{c: c, outcome: acked}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		return result{c: c, outcome: backPressure}
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return e.failDispatch(c, telemetry.ReasonStatus4xx, fmt.Sprintf("worker answered %s", resp.Status))
	case resp.StatusCode >= 500:
		return e.failDispatch(c, telemetry.ReasonStatus5xx, fmt.Sprintf("worker answered %s", resp.Status))
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		r := e.failDispatch(c, telemetry.ReasonStatus, fmt.Sprintf("worker answered %s; redirects are not followed", resp.Status))
		r.detail = r.err + " (Location: " + resp.Header.Get("Location") + ")"
		return r
	}
	return e.failDispatch(c, telemetry.ReasonStatus, fmt.Sprintf("worker answered %s", resp.Status))
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

// Sweep ends up to limit attempts whose deadline passed (expired dispatch leases, missed
// heartbeats, hard timeouts): they are retried or failed like any failed attempt. A callback
// that commits first always wins.
func (e *Engine) Sweep(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = e.cfg.SweepBatch
	}
	n, err := e.sweep(ctx, limit)
	if err != nil {
		e.metrics.SweepResults.WithLabelValues(telemetry.SweepError).Inc()
		return n, err
	}
	// Each sweep looks at the maintenance mode: waiting_for_maintenance ends here once the
	// last run in flight ended, whichever instance ended it.
	if _, err := e.SettleMaintenance(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("checking the maintenance mode failed", "err", err)
	}
	return n, nil
}

func (e *Engine) sweep(ctx context.Context, limit int) (int, error) {
	// Housekeeping that rides along: fold the final-state count deltas.
	if _, err := e.pool.Exec(ctx, sqlFoldDeltas); err != nil {
		return 0, fmt.Errorf("fold status counts: %w", err)
	}
	rows, err := e.pool.Query(ctx, sqlSweep, limit)
	if err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	var f failures
	kinds := map[string]string{}
	for rows.Next() {
		var id, prun, code, msg, kind string
		var lease int64
		if err := rows.Scan(&id, &lease, &prun, &code, &msg, &kind); err != nil {
			rows.Close()
			return 0, fmt.Errorf("sweep: %w", err)
		}
		f.add(id, &lease, prun, msg, code)
		kinds[id] = kind
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	if len(f.ids) == 0 {
		return 0, nil
	}
	ended, err := e.failAndAdvance(ctx, f)
	if err != nil {
		return 0, err
	}
	for _, a := range ended {
		e.metrics.Timeouts.WithLabelValues(a.TaskID, kinds[a.RunID]).Inc()
		outcome := telemetry.SweepRetried
		if a.Status == protocol.StatusFailed {
			outcome = telemetry.SweepFailed
		}
		e.metrics.SweepResults.WithLabelValues(outcome).Inc()
	}
	e.metrics.SweepResults.WithLabelValues(telemetry.SweepSkipped).Add(float64(len(f.ids) - len(ended)))
	if len(ended) > 0 {
		e.log.Info("sweep ended expired attempts", "count", len(ended))
	}
	return len(ended), nil
}

// failures are attempts to end as failed (each may be retried), column by column.
type failures struct {
	ids, pipelineRuns, errs, codes []string
	leases                         []*int64
	retry                          []bool
}

// add adds an attempt that is retried if it has retries left.
func (f *failures) add(id string, lease *int64, pipelineRun, msg, code string) {
	f.addFinal(id, lease, pipelineRun, msg, code, false)
}

// addFinal adds an attempt that, if final, fails for good whatever retries are left.
func (f *failures) addFinal(id string, lease *int64, pipelineRun, msg, code string, final bool) {
	f.ids, f.leases, f.pipelineRuns = append(f.ids, id), append(f.leases, lease), append(f.pipelineRuns, pipelineRun)
	f.errs, f.codes, f.retry = append(f.errs, msg), append(f.codes, code), append(f.retry, !final)
}

// failAndAdvance ends attempts the orchestrator gave up on (failed dispatches, expired
// deadlines) as failed, moving their leases on so the workers' late calls get 409, and, in the
// same transaction, advances the pipeline runs of those that failed for good.
func (e *Engine) failAndAdvance(ctx context.Context, f failures) ([]endedAttempt, error) {
	var ended []endedAttempt
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		runs, err := e.lockRuns(ctx, tx, f.pipelineRuns)
		if err != nil {
			return err
		}
		if ended, err = e.failAttempts(ctx, tx, f.ids, f.leases, f.errs, f.codes, f.retry, true); err != nil {
			return err
		}
		return e.advanceFailed(ctx, tx, runs, ended)
	})
	if err == nil {
		e.countEnded(ended)
	}
	return ended, err
}

// countEnded counts, once their transaction committed, the failed attempts that were retried
// and the runs that failed for good into the DLQ.
func (e *Engine) countEnded(ended []endedAttempt) {
	for _, a := range ended {
		switch a.Status {
		case protocol.StatusPending:
			e.metrics.Retries.WithLabelValues(a.TaskID).Inc()
		case protocol.StatusFailed:
			e.metrics.DLQEntries.WithLabelValues(a.TaskID).Inc()
		}
	}
}

// advanceFailed advances the pipeline runs of attempts that failed for good.
func (e *Engine) advanceFailed(ctx context.Context, tx dbtx, runs map[string]*lockedRun, ended []endedAttempt) error {
	byRun := map[string][]resolution{}
	for _, a := range ended {
		if a.Status == protocol.StatusFailed && a.PipelineRunID != "" {
			byRun[a.PipelineRunID] = append(byRun[a.PipelineRunID], resolution{taskID: a.TaskID, failed: true})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(byRun)) {
		run := runs[id]
		if run == nil {
			return fmt.Errorf("pipeline run %s was not locked before its task runs", id)
		}
		if err := e.advance(ctx, tx, run, byRun[id]); err != nil {
			return err
		}
	}
	return nil
}

// endedAttempt is a run whose attempt failed, with what became of it.
type endedAttempt struct {
	RunID         string
	TaskID        string
	Status        protocol.TaskRunStatus // pending (retry) or failed
	Attempt       int
	AvailableAt   time.Time
	PipelineRunID string
	// Seconds is the time from the run's first claim to the end of this attempt.
	Seconds float64
}

// failAttempts applies fail_attempts in tx; a nil lease applies to whatever lease is current
// (compat workers send no token).
func (e *Engine) failAttempts(ctx context.Context, tx dbtx, ids []string, leases []*int64, errs, codes []string,
	retry []bool, bump bool) ([]endedAttempt, error) {
	rows, err := tx.Query(ctx, sqlFailAttempts, ids, leases, errs, codes, retry, bump)
	if err != nil {
		return nil, fmt.Errorf("fail attempts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (endedAttempt, error) {
		var a endedAttempt
		err := row.Scan(&a.RunID, &a.TaskID, &a.Status, &a.Attempt, &a.AvailableAt, &a.PipelineRunID, &a.Seconds)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("fail attempts: %w", err)
	}
	return out, nil
}

// Process does one bounded batch: sweep, then claim and dispatch up to limit runs within budget
// (0 = no time bound).
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
	s.DurationMs = time.Since(start).Milliseconds()
	return s, nil
}

// maxClaimChunk bounds one claim of Process: larger batches are claimed in several.
const maxClaimChunk = 200

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
