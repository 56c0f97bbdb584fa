package engine

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// PipelineRun is a run of a pipeline: its state, snapshot and, in detail, its task runs.
type PipelineRun = protocol.PipelineRun

// RunTask is a task run within a pipeline run, with whether its code changed since the previous
// run of the same pipeline.
type RunTask = protocol.PipelineRunTask

func scanPipelineRun(row pgx.Row) (PipelineRun, error) {
	var r PipelineRun
	var metadata, snap []byte
	var errText string
	if err := row.Scan(&r.ID, &r.PipelineID, &r.Status, &r.FailureMode, &r.Priority, &metadata, &r.InputPath, &snap,
		&errText, &r.CreatedAt, &r.CompletedAt); err != nil {
		return PipelineRun{}, err
	}
	if len(metadata) > 0 {
		r.Metadata = metadata
	}
	if len(snap) > 0 {
		r.Snapshot = snap
	}
	r.Error = nonEmpty(errText)
	return r, nil
}

// RunsFilter selects pipeline runs.
type RunsFilter struct {
	PipelineID, Status, Cursor string
	Limit                      int
}

// ListPipelineRuns lists pipeline runs, newest first, a page at a time.
func (e *Engine) ListPipelineRuns(ctx context.Context, f RunsFilter) (Page[PipelineRun], error) {
	if f.Status != "" && !protocol.PipelineRunStatus(f.Status).Valid() {
		return Page[PipelineRun]{}, invalid("INVALID_STATUS", "status must be one of %v", protocol.PipelineRunStatuses)
	}
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return Page[PipelineRun]{}, err
	}
	if err := checkCursor(f.Cursor); err != nil {
		return Page[PipelineRun]{}, err
	}
	rows, err := e.pool.Query(ctx, sqlPipelineRunList, f.PipelineID, f.Status, f.Cursor, limit+1)
	if err != nil {
		return Page[PipelineRun]{}, fmt.Errorf("list pipeline runs: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (PipelineRun, error) { return scanPipelineRun(row) })
	if err != nil {
		return Page[PipelineRun]{}, fmt.Errorf("list pipeline runs: %w", err)
	}
	return paginate(items, limit, func(r PipelineRun) string { return r.ID }), nil
}

// GetPipelineRun returns a pipeline run with its snapshot and every task run, each flagged when
// its code version differs from the previous run of the same pipeline.
func (e *Engine) GetPipelineRun(ctx context.Context, id string) (PipelineRun, error) {
	run, err := scanPipelineRun(e.pool.QueryRow(ctx, sqlPipelineRunGet, id))
	if err == pgx.ErrNoRows {
		return PipelineRun{}, notFound("PIPELINE_RUN_NOT_FOUND", "pipeline run %q not found", id)
	}
	if err != nil {
		return PipelineRun{}, fmt.Errorf("read pipeline run %s: %w", id, err)
	}
	rows, err := e.pool.Query(ctx, sqlPipelineRunTasks, id)
	if err != nil {
		return PipelineRun{}, fmt.Errorf("read task runs of %s: %w", id, err)
	}
	run.Tasks, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (RunTask, error) {
		var t RunTask
		r, err := scanRun(runWithExtra{row, &t.SupersededBy})
		t.TaskRun = r
		return t, err
	})
	if err != nil {
		return PipelineRun{}, fmt.Errorf("read task runs of %s: %w", id, err)
	}
	prev := map[string]int{}
	rows, err = e.pool.Query(ctx, sqlPreviousVersions, id)
	if err != nil {
		return PipelineRun{}, fmt.Errorf("read the previous run of %s: %w", id, err)
	}
	for rows.Next() {
		var task string
		var v int
		if err := rows.Scan(&task, &v); err != nil {
			rows.Close()
			return PipelineRun{}, fmt.Errorf("read the previous run of %s: %w", id, err)
		}
		prev[task] = v
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return PipelineRun{}, fmt.Errorf("read the previous run of %s: %w", id, err)
	}
	for i := range run.Tasks {
		if v, ok := prev[run.Tasks[i].TaskID]; ok {
			run.Tasks[i].PreviousCodeVersion = &v
			run.Tasks[i].CodeChanged = v != run.Tasks[i].CodeVersion
		}
	}
	return run, nil
}

// runWithExtra scans a run row followed by one extra column.
type runWithExtra struct {
	row   pgx.Row
	extra any
}

func (r runWithExtra) Scan(dest ...any) error { return r.row.Scan(append(dest, r.extra)...) }

// CancelPipelineRun cancels a running pipeline run: what has not started is cancelled, running
// workers learn it from shouldCancel on their next heartbeat, and late callbacks change nothing.
func (e *Engine) CancelPipelineRun(ctx context.Context, id string) (PipelineRun, error) {
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		runs, err := e.lockRuns(ctx, tx, []string{id})
		if err != nil {
			return err
		}
		run := runs[id]
		if run == nil {
			return notFound("PIPELINE_RUN_NOT_FOUND", "pipeline run %q not found", id)
		}
		if run.status != protocol.PipelineRunning {
			return conflict("PIPELINE_RUN_FINISHED", "pipeline run %q is already %s", id, run.status)
		}
		if _, err := tx.Exec(ctx, sqlCancelNodes, id, []protocol.TaskRunStatus{protocol.StatusWaiting, protocol.StatusPending,
			protocol.StatusDispatching, protocol.StatusRunning}, "the pipeline run was cancelled"); err != nil {
			return fmt.Errorf("cancel %s: %w", id, err)
		}
		if _, err := tx.Exec(ctx, sqlFinishPipelineRun, id, protocol.PipelineCancelled, "cancelled by request"); err != nil {
			return fmt.Errorf("cancel %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return PipelineRun{}, err
	}
	return e.GetPipelineRun(ctx, id)
}
