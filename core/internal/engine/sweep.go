package engine

import (
	"context"
	"fmt"

	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

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
	if err := queries.FoldStatusDeltas(ctx, e.db); err != nil {
		return 0, fmt.Errorf("fold status counts: %w", err)
	}
	rows, err := queries.Sweep(ctx, e.db, dbsqlc.SweepParams{Max: limit, Now: e.now()})
	if err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	var f failures
	kinds := map[string]string{}
	for _, r := range rows {
		f.add(r.ID, r.Lease, r.PipelineRunID, r.Message, r.Code)
		kinds[r.ID] = r.Kind
	}
	if len(f.ids) == 0 {
		return 0, nil
	}
	ended, err := e.failAndAdvance(ctx, f)
	if err != nil {
		return 0, err
	}
	for _, a := range ended {
		e.metrics.Timeouts.WithLabelValues(a.TaskID, kinds[a.ID]).Inc()
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
