package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// Sweep ends up to limit attempts whose deadline passed (expired dispatch leases, missed
// heartbeats, hard timeouts): they are retried or failed like any failed attempt. A callback
// that commits first always wins. It then times out up to limit running pipeline runs whose
// deadline (timeoutMs) passed (sweepDeadlines). It returns how many attempts and pipeline runs
// it ended.
func (e *Engine) Sweep(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = e.cfg.SweepBatch
	}
	n, err := e.sweep(ctx, limit)
	if err != nil {
		e.metrics.SweepResults.WithLabelValues(telemetry.SweepError).Inc()
		return n, err
	}
	timedOut, err := e.sweepDeadlines(ctx, limit)
	n += timedOut
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

// deadlineBatch is the most pipeline runs one transaction of sweepDeadlines times out.
const deadlineBatch = 50

// sweepDeadlines times out up to limit running pipeline runs whose deadline passed (e.now(), nil
// = the database clock), earliest deadline first, deadlineBatch runs per transaction: each
// transaction locks its runs in id order, as every writer does, and ends those still running
// (a callback that ended a run first wins): their open nodes are cancelled ("the pipeline run
// timed out"; running workers learn it from shouldCancel on their next heartbeat, and their late
// callbacks change nothing) and the run fails with PIPELINE_TIMEOUT. It returns how many runs it
// ended.
func (e *Engine) sweepDeadlines(ctx context.Context, limit int) (int, error) {
	rows, err := queries.ExpiredPipelineRuns(ctx, e.db, dbsqlc.ExpiredPipelineRunsParams{Now: e.now(), Max: limit})
	if err != nil {
		return 0, fmt.Errorf("sweep pipeline deadlines: %w", err)
	}
	ended := 0
	for batch := range slices.Chunk(rows, deadlineBatch) {
		timeouts := make(map[string]int64, len(batch))
		pipelines := make(map[string]string, len(batch))
		ids := make([]string, len(batch))
		for i, r := range batch {
			ids[i], timeouts[r.ID], pipelines[r.ID] = r.ID, r.TimeoutMs, r.PipelineID
		}
		var runs map[string]*lockedRun
		err := e.db.InTx(ctx, func(tx dbtx) error {
			var err error
			if runs, err = e.lockRuns(ctx, tx, ids); err != nil {
				return err
			}
			for _, id := range slices.Sorted(maps.Keys(runs)) {
				run := runs[id]
				// runs also holds the ancestors of sub-pipeline runs, locked with them.
				if _, ok := timeouts[id]; !ok || run.status != protocol.PipelineRunning {
					continue
				}
				if err := e.endPipelineRun(ctx, tx, run, runEnd{status: protocol.PipelineFailed,
					err:  fmt.Sprintf("pipeline run timed out after %d ms", timeouts[id]),
					code: protocol.PipelineTimeout, reason: "the pipeline run timed out"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return ended, fmt.Errorf("sweep pipeline deadlines: %w", err)
		}
		e.cfg.Signals.signalEnded(runs)
		for _, run := range runs {
			// Only the runs of the batch that timed out: the batch also locked their ancestors,
			// which a child's end may have ended too (subpipelines.go).
			if _, ok := timeouts[run.id]; ok && run.ended && run.status == protocol.PipelineFailed {
				ended++
				e.metrics.PipelineTimeouts.WithLabelValues(pipelines[run.id]).Inc()
			}
		}
	}
	if ended > 0 {
		e.log.Info("sweep timed out pipeline runs", "count", ended)
	}
	return ended, nil
}
