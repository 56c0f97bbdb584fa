package platform

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pipeweave/pipeweave/core"
)

// The four functions of a serverless deployment, as Builders.

// API is the HTTP API (every /api/* endpoint and /health). Over HTTP in standalone mode it
// also runs the orchestrator's loop.
func API(e Env) (*Function, error) {
	f := NewAPI("api", e.Orchestrator.Handler())
	f.loop = e.Orchestrator.Run // returns at once in serverless mode
	return f, nil
}

// Process does one bounded batch: sweep expired attempts, then claim and dispatch up to
// PROCESS_BATCH_SIZE runs within PROCESS_TIME_BUDGET_MS. Its summary is
// {"swept","claimed","dispatched","failed","durationMs"}. Concurrent invocations never
// dispatch the same run: each claim is one statement with FOR UPDATE SKIP LOCKED.
func Process(e Env) (*Function, error) {
	o := e.Orchestrator
	return NewScheduled("process", func(ctx context.Context) (any, error) {
		s, err := o.Process(ctx)
		if err != nil {
			return nil, fmt.Errorf("process a batch: %w", err)
		}
		return s, nil
	}, scheduledOptions(e)), nil
}

// SweepSummary is what one heartbeat-sweep invocation did.
type SweepSummary struct {
	Swept      int   `json:"swept"`
	DurationMs int64 `json:"durationMs"`
}

// HeartbeatSweep ends the attempts whose heartbeat deadline, timeout or dispatch lease has
// passed (retry or failure), and fails the pipeline runs whose deadline (timeoutMs) passed
// with PIPELINE_TIMEOUT. Its summary is {"swept","durationMs"}, swept counting both.
func HeartbeatSweep(e Env) (*Function, error) {
	o := e.Orchestrator
	return NewScheduled("heartbeat-sweep", func(ctx context.Context) (any, error) {
		start := time.Now()
		n, err := o.Sweep(ctx)
		if err != nil {
			return nil, fmt.Errorf("sweep: %w", err)
		}
		return SweepSummary{Swept: n, DurationMs: time.Since(start).Milliseconds()}, nil
	}, scheduledOptions(e)), nil
}

// DefaultPurgeBudget is the time one dlq-purge invocation may spend deleting, unless
// PURGE_TIME_BUDGET_MS says otherwise.
const DefaultPurgeBudget = 20 * time.Second

// DLQPurge deletes DLQ entries and finished runs older than DLQ_RETENTION_DAYS, expired
// idempotency keys and expired, unclaimed temporary uploads, in chunks, within
// PURGE_TIME_BUDGET_MS (default 20000). Its summary is
// {"dlq","idempotencyKeys","runs","pipelineRuns","tempUploads","durationMs"}.
func DLQPurge(e Env) (*Function, error) {
	budget := DefaultPurgeBudget
	if raw := strings.TrimSpace(e.Getenv("PURGE_TIME_BUDGET_MS")); raw != "" {
		ms, err := strconv.Atoi(raw)
		if err != nil || ms < 100 {
			return nil, &core.ConfigError{Var: "PURGE_TIME_BUDGET_MS", Msg: fmt.Sprintf("must be an integer of at least 100, got %q", raw)}
		}
		budget = time.Duration(ms) * time.Millisecond
	}
	o := e.Orchestrator
	return NewScheduled("dlq-purge", func(ctx context.Context) (any, error) {
		s, err := o.Purge(ctx, budget)
		if err != nil {
			return nil, fmt.Errorf("purge: %w", err)
		}
		return s, nil
	}, scheduledOptions(e)), nil
}

func scheduledOptions(e Env) ScheduledOptions {
	return ScheduledOptions{Health: e.Orchestrator.Handler(), Logger: e.Log}
}
