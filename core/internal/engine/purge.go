package engine

import (
	"context"
	"fmt"
	"time"
)

var (
	sqlPurgeDLQ          = q("purge_dlq")
	sqlPurgeIdempotency  = q("purge_idempotency_keys")
	sqlPurgeRuns         = q("purge_runs")
	sqlPurgePipelineRuns = q("purge_pipeline_runs")
)

// PurgeSummary counts what a purge deleted.
type PurgeSummary struct {
	DLQ             int64 `json:"dlq"`
	IdempotencyKeys int64 `json:"idempotencyKeys"`
	Runs            int64 `json:"runs"`
	PipelineRuns    int64 `json:"pipelineRuns"`
	TempUploads     int64 `json:"tempUploads"` // expired, unclaimed temporary uploads deleted
	DurationMs      int64 `json:"durationMs"`
}

// deleteChunks runs the chunked delete query (whose last argument is chunk) until it deletes
// fewer than chunk rows or deadline has passed (zero: no deadline), and returns how many it
// deleted.
func (e *Engine) deleteChunks(ctx context.Context, what, query string, args []any, chunk int, deadline time.Time) (int64, error) {
	var n int64
	for {
		tag, err := e.pool.Exec(ctx, query, args...)
		if err != nil {
			return n, fmt.Errorf("purge %s: %w", what, err)
		}
		n += tag.RowsAffected()
		if tag.RowsAffected() < int64(chunk) || (!deadline.IsZero() && time.Now().After(deadline)) {
			return n, nil
		}
	}
}

// Purge deletes DLQ entries and finished runs older than retention, and expired idempotency
// keys, in chunks of chunk rows, then expired, unclaimed temporary uploads (their objects too)
// and the tombstones of uploads deleted longer ago than retention, until nothing is left or
// budget has passed. Other objects in storage are left to the bucket's own lifecycle rules.
func (e *Engine) Purge(ctx context.Context, retention time.Duration, chunk int, budget time.Duration) (PurgeSummary, error) {
	start := time.Now()
	if chunk <= 0 {
		chunk = 1000
	}
	var s PurgeSummary
	steps := []struct {
		name  string
		sql   string
		args  []any
		count *int64
	}{
		{"dlq entries", sqlPurgeDLQ, []any{retention.Milliseconds(), chunk}, &s.DLQ},
		{"idempotency keys", sqlPurgeIdempotency, []any{chunk}, &s.IdempotencyKeys},
		{"runs", sqlPurgeRuns, []any{retention.Milliseconds(), chunk}, &s.Runs},
		{"pipeline runs", sqlPurgePipelineRuns, []any{retention.Milliseconds(), chunk}, &s.PipelineRuns},
	}
	for _, st := range steps {
		n, err := e.deleteChunks(ctx, st.name, st.sql, st.args, chunk, start.Add(budget))
		*st.count += n
		if err != nil {
			return s, err
		}
	}
	n, err := e.cleanupTempUploads(ctx, retention, chunk, start.Add(budget))
	s.TempUploads += n
	if err != nil {
		return s, err
	}
	s.DurationMs = time.Since(start).Milliseconds()
	return s, nil
}
