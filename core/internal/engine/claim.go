package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// claimLock serialises claims across every instance, so that the in-flight counts a claim reads
// include every earlier claim and concurrency limits hold ("pipeweave/claim").
const claimLock int64 = 0x7077636c61696d

// Claimed is a run taken for dispatch, with everything the dispatch needs.
type Claimed struct {
	RunID         string
	TaskID        string
	PipelineRunID string
	Attempt       int
	Lease         int64
	CodeVersion   int
	CodeHash      string
	InputPath     string
	// Input is the input kept inline (the run's own or its pipeline run's); nil: it is in
	// storage at InputPath.
	Input               []byte
	PreviousAttempts    []protocol.Attempt
	HeartbeatIntervalMs int64
	TimeoutSeconds      int
	BaseURL             string
	Priority            int
	// ServiceID is the service that registered the task, and KeyID the key id of the master
	// secret it registered with ("" if unknown): its dispatches are sealed for that service.
	ServiceID string
	KeyID     string
	// DispatchBatchMax is how many dispatches the service's workers take in one request
	// (0 or 1: one; Dispatch, dispatchbatch.go).
	DispatchBatchMax int
	// Traceparent is the W3C trace context the run continues ("" = none): its dispatch span is
	// a child of it.
	Traceparent string
	// Upstream are the outputs of the run's completed predecessors, by task id, as its dispatch
	// carries them (nil: none).
	Upstream map[string]protocol.UpstreamRef
}

// Claim takes up to limit ready runs (lower priority first, then oldest), moving them to
// dispatching under a new lease. It never exceeds MaxConcurrency or a task's concurrency, however
// many instances claim at once.
func (e *Engine) Claim(ctx context.Context, limit int) ([]Claimed, error) {
	if limit <= 0 {
		limit = e.cfg.ClaimBatch
	}
	start := time.Now()
	params := e.claimParams(limit)
	var out []Claimed
	var refill int64
	// Flow control (rate limits, concurrency per key) needs the longer statement; without it
	// the claim costs what it did before the feature existed.
	flow, err := e.flowControlInUse(ctx)
	if err != nil {
		return nil, err
	}
	// The lock and the claim travel in one batch (database.Pipelined): one round trip, one
	// transaction, and the claim's snapshot is taken once the lock is held.
	err = e.db.Pipelined(ctx, func(tx dbtx) error {
		// The claim authorises a dispatch, so its commit waits for the WAL flush like any other:
		// a claim lost in a database crash would be taken again under the same lease and its
		// run dispatched twice. Claims serialise on this lock through that flush (a fraction
		// of a millisecond against the claim's few; README, Performance).
		if err := queries.LockClaimsGenericPlan(ctx, tx, claimLock); err != nil {
			return fmt.Errorf("take claim lock: %w", err)
		}
		var rows []dbsqlc.ClaimRow
		var err error
		if flow {
			rows, refill, err = claimFlowControl(ctx, tx, dbsqlc.ClaimFlowControlParams(params))
		} else {
			rows, err = queries.Claim(ctx, tx, params)
		}
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		out, err = claimedOf(rows)
		return err
	})
	e.claimSpan(ctx, start, limit, out, err)
	if err != nil {
		return nil, err
	}
	e.claimed(out, refill)
	return out, nil
}

// claimParams are the parameters of a claim of up to limit runs: MAX_CONCURRENCY, the dispatch
// lease (DispatchTimeout and a margin) and the engine's clock.
func (e *Engine) claimParams(limit int) dbsqlc.ClaimParams {
	return dbsqlc.ClaimParams{Max: limit, MaxConcurrency: e.cfg.MaxConcurrency,
		LeaseMs: (e.cfg.DispatchTimeout + 10*time.Second).Milliseconds(), Now: e.now()}
}

// claimed records what a claim took (out) and when the rate limit it found spent refills
// (epoch ms; 0: none).
func (e *Engine) claimed(out []Claimed, refill int64) {
	e.pipelineOf.add(out)
	e.metrics.Claims.Add(float64(len(out)))
	e.rateRefill.Store(refill)
	if refill != 0 {
		e.metrics.RateLimitedClaims.Inc()
	}
}

// claimedOf turns a claim's rows into the runs to dispatch.
func claimedOf(rows []dbsqlc.ClaimRow) ([]Claimed, error) {
	out := make([]Claimed, len(rows))
	for i, r := range rows {
		out[i] = Claimed{RunID: r.ID, TaskID: r.TaskID, PipelineRunID: r.PipelineRunID, Attempt: r.Attempt,
			Lease: r.Lease, CodeVersion: r.CodeVersion, CodeHash: r.CodeHash, InputPath: r.InputPath,
			Input: r.Input, HeartbeatIntervalMs: deref(r.HeartbeatIntervalMs), TimeoutSeconds: r.TimeoutSeconds, BaseURL: r.BaseURL, DispatchBatchMax: r.DispatchBatchMax,
			Priority: r.Priority, Traceparent: r.Traceparent, ServiceID: r.ServiceID, KeyID: r.KeyID}
		if err := json.Unmarshal(r.PreviousAttempts, &out[i].PreviousAttempts); err != nil {
			return nil, fmt.Errorf("claim: previous attempts of %s: %w", r.ID, err)
		}
		var err error
		if out[i].Upstream, err = upstreamOf(r); err != nil {
			return nil, fmt.Errorf("claim: upstream outputs of %s: %w", r.ID, err)
		}
	}
	return out, nil
}

// claimFlowControl runs ClaimFlowControl and returns its runs in Claim's shape, and when the
// earliest spent rate limit refills (epoch ms; 0: none is spent).
func claimFlowControl(ctx context.Context, tx dbtx, p dbsqlc.ClaimFlowControlParams) ([]dbsqlc.ClaimRow, int64, error) {
	rows, err := queries.ClaimFlowControl(ctx, tx, p)
	if err != nil {
		return nil, 0, err
	}
	out, refill := flowControlRows(rows)
	return out, refill, nil
}

// flowControlRows returns ClaimFlowControl's runs in Claim's shape, and when the earliest spent
// rate limit refills (epoch ms; 0: none is spent).
func flowControlRows(rows []dbsqlc.ClaimFlowControlRow) ([]dbsqlc.ClaimRow, int64) {
	var refill int64
	out := make([]dbsqlc.ClaimRow, 0, len(rows))
	for _, r := range rows {
		if r.ID == "" {
			// Not a run: a rate limit's budget is spent until refill_ms.
			refill = r.RefillMs
			continue
		}
		out = append(out, dbsqlc.ClaimRow{ID: r.ID, TaskID: r.TaskID, PipelineRunID: r.PipelineRunID, Attempt: r.Attempt, Lease: r.Lease,
			CodeVersion: r.CodeVersion, CodeHash: r.CodeHash, InputPath: r.InputPath, PreviousAttempts: r.PreviousAttempts,
			HeartbeatIntervalMs: r.HeartbeatIntervalMs, Input: r.Input, TimeoutSeconds: r.TimeoutSeconds, BaseURL: r.BaseURL, DispatchBatchMax: r.DispatchBatchMax,
			Priority: r.Priority, Traceparent: r.Traceparent, ServiceID: r.ServiceID, KeyID: r.KeyID, UpTaskIds: r.UpTaskIds,
			UpOutputPaths: r.UpOutputPaths, UpAssets: r.UpAssets, UpOutputs: r.UpOutputs})
	}
	return out, refill
}

// flowControlRecheck is how long an engine trusts what it last read of whether any task uses
// flow control. A task registered with a rate limit or a concurrency key elsewhere meanwhile is
// safe: the plain claim never takes such a task's runs, they only wait (about this long, for
// this engine's claims; a registration through this engine applies at once).
const flowControlRecheck = time.Second

// flowControlInUse reports whether any registered task has a rate limit or a concurrency key.
// The first claim (and the first after a registration through this engine) reads it; later, a
// claim that finds the answer older than flowControlRecheck uses it and has it read again in the
// background, so that the claim path never waits for that read.
func (e *Engine) flowControlInUse(ctx context.Context) (bool, error) {
	e.flowMu.Lock()
	defer e.flowMu.Unlock()
	switch {
	case e.flowChecked.IsZero():
		inUse, err := queries.FlowControlInUse(ctx, e.db)
		if err != nil {
			return false, fmt.Errorf("read whether flow control is in use: %w", err)
		}
		e.flowInUse, e.flowChecked = inUse, time.Now()
	case time.Since(e.flowChecked) >= flowControlRecheck && !e.flowRefreshing:
		e.flowRefreshing = true
		go e.refreshFlowControl()
	}
	return e.flowInUse, nil
}

// refreshFlowControl reads again whether any task has flow control (a failed read leaves the
// last answer, read again at the next claim).
func (e *Engine) refreshFlowControl() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inUse, err := queries.FlowControlInUse(ctx, e.db)
	e.flowMu.Lock()
	defer e.flowMu.Unlock()
	e.flowRefreshing = false
	if err == nil && !e.flowChecked.IsZero() { // a registration meanwhile: the next claim reads
		e.flowInUse, e.flowChecked = inUse, time.Now()
	}
}

// flowControlOn makes this engine's claims use ClaimFlowControl until the next read of whether
// flow control is in use (flowControlRecheck): a map with maxConcurrency fanned out. It only
// ever switches to the statement that does more, so a transaction that rolls back afterwards
// costs one longer claim at most.
func (e *Engine) flowControlOn() {
	e.flowMu.Lock()
	defer e.flowMu.Unlock()
	e.flowInUse, e.flowChecked = true, time.Now()
}

// forgetFlowControl makes the next claim read again whether flow control is in use.
func (e *Engine) forgetFlowControl() {
	e.flowMu.Lock()
	defer e.flowMu.Unlock()
	e.flowChecked = time.Time{}
}

// RateLimitRefill is when the rate limit that the last claim found spent refills (zero: the last
// claim found none spent). A loop that claimed less than it asked for claims again by then, so
// that a rate-limited backlog dispatches at its rate without waiting for a poll, and without
// claiming in a loop meanwhile.
func (e *Engine) RateLimitRefill() time.Time {
	ms := e.rateRefill.Load()
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
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
