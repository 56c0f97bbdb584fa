package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// PurgeSummary counts what a purge deleted.
type PurgeSummary struct {
	DLQ             int64
	IdempotencyKeys int64
	Runs            int64
	PipelineRuns    int64
	TempUploads     int64 // expired, unclaimed temporary uploads deleted
	ScheduleSlots   int64 // records of handled schedule slots
	// WebhookDeliveries counts delivered and dead webhook deliveries deleted.
	WebhookDeliveries int64
	DurationMs        int64
}

// deleteChunks runs del, a delete of at most chunk rows, until it deletes fewer than chunk
// rows or deadline has passed (zero: no deadline), and returns how many it deleted.
func (e *Engine) deleteChunks(ctx context.Context, what string, del func(context.Context) (int64, error), chunk int,
	deadline time.Time) (int64, error) {
	var n int64
	for {
		deleted, err := del(ctx)
		if err != nil {
			return n, fmt.Errorf("purge %s: %w", what, err)
		}
		n += deleted
		if deleted < int64(chunk) || (!deadline.IsZero() && time.Now().After(deadline)) {
			return n, nil
		}
	}
}

// Purge deletes DLQ entries, finished runs and finished webhook deliveries older than retention, and expired idempotency
// keys, in chunks of chunk rows, then expired, unclaimed temporary uploads (their objects too)
// and the tombstones of uploads deleted longer ago than retention, until nothing is left or
// budget has passed. Other objects in storage are left to the bucket's own lifecycle rules.
func (e *Engine) Purge(ctx context.Context, retention time.Duration, chunk int, budget time.Duration) (PurgeSummary, error) {
	start := time.Now()
	if chunk <= 0 {
		chunk = 1000
	}
	var s PurgeSummary
	older := retention.Milliseconds()
	steps := []struct {
		name  string
		del   func(context.Context) (int64, error)
		count *int64
	}{
		{"dlq entries", func(ctx context.Context) (int64, error) {
			return queries.PurgeDLQ(ctx, e.db, dbsqlc.PurgeDLQParams{OlderThanMs: older, Max: chunk, Now: e.now()})
		}, &s.DLQ},
		{"idempotency keys", func(ctx context.Context) (int64, error) {
			return queries.PurgeIdempotencyKeys(ctx, e.db, dbsqlc.PurgeIdempotencyKeysParams{Max: chunk, Now: e.now()})
		}, &s.IdempotencyKeys},
		{"runs", func(ctx context.Context) (int64, error) {
			return queries.PurgeRuns(ctx, e.db, dbsqlc.PurgeRunsParams{OlderThanMs: older, Max: chunk, Now: e.now()})
		}, &s.Runs},
		{"pipeline runs", func(ctx context.Context) (int64, error) {
			return queries.PurgePipelineRuns(ctx, e.db, dbsqlc.PurgePipelineRunsParams{OlderThanMs: older, Max: chunk, Now: e.now()})
		}, &s.PipelineRuns},
		{"schedule slots", func(ctx context.Context) (int64, error) {
			return queries.PurgeScheduleFires(ctx, e.db, dbsqlc.PurgeScheduleFiresParams{OlderThanMs: older, Max: chunk, Now: e.now()})
		}, &s.ScheduleSlots},
		{"webhook deliveries", func(ctx context.Context) (int64, error) {
			return queries.PurgeWebhookDeliveries(ctx, e.db, dbsqlc.PurgeWebhookDeliveriesParams{OlderThanMs: older, Max: chunk, Now: e.now()})
		}, &s.WebhookDeliveries},
	}
	for _, st := range steps {
		n, err := e.deleteChunks(ctx, st.name, st.del, chunk, start.Add(budget))
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
