package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// PipelineRun is a run of a pipeline: its state, snapshot and, in detail, its task runs.
type PipelineRun struct {
	ID          string
	PipelineID  string
	Status      protocol.PipelineRunStatus
	FailureMode string
	Priority    int
	Metadata    json.RawMessage
	InputPath   string
	Error       *string
	CreatedAt   time.Time
	CompletedAt *time.Time
	// Snapshot is the structure the run follows: {pipelineId, entryTasks, failureMode, tasks}
	// with the tasks as PipelineNodes.
	Snapshot json.RawMessage
	Tasks    []RunTask
	// ScheduleID and ScheduleSlot name the schedule and the slot that made the run.
	ScheduleID   string
	ScheduleSlot *time.Time
	// TimeoutMs and Deadline are the run's timeout and the time the sweep ends it at if it is
	// still running then (nil: none).
	TimeoutMs *int64
	Deadline  *time.Time
	// ErrorCode says why the run ended when it says (protocol.PipelineTimeout; "" otherwise).
	ErrorCode string
	// Maps are the run's map nodes with their items counted by state (nil: none; GetPipelineRun).
	Maps []protocol.MapNodeState
	// Parent and Children link a run to its sub-pipeline relatives (subpipelines.go; read by
	// GetPipelineRun only): the parent run and its node (nil: a top-level run) and the child
	// runs of its sub-pipeline nodes.
	Parent   *RunRelative
	Children []RunRelative
}

// RunTask is a task run within a pipeline run, with whether its code changed since the previous
// run of the same pipeline.
type RunTask struct {
	Run
	// SupersededBy names the task run a DLQ retry replaced this failed one with.
	SupersededBy string
	// CodeChanged: the previous run of this pipeline ran this task at another code version.
	CodeChanged bool
	// PreviousCodeVersion is that version (nil when there is no previous run of the task).
	PreviousCodeVersion *int
}

// pipelineRunOf is the pipeline run a PipelineRunGet row (or a PipelineRunList one) stores.
func pipelineRunOf(row dbsqlc.PipelineRunGetRow) PipelineRun {
	r := PipelineRun{ID: row.ID, PipelineID: row.PipelineID, Status: row.Status, FailureMode: row.FailureMode,
		Priority: row.Priority, InputPath: row.InputPath, Error: nonEmpty(row.Error), CreatedAt: row.CreatedAt,
		CompletedAt: row.CompletedAt, ScheduleID: row.ScheduleID, ScheduleSlot: row.ScheduleSlot,
		TimeoutMs: row.TimeoutMs, Deadline: row.Deadline, ErrorCode: row.ErrorCode}
	if len(row.Metadata) > 0 {
		r.Metadata = row.Metadata
	}
	if len(row.Snapshot) > 0 {
		r.Snapshot = row.Snapshot
	}
	return r
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
	rows, err := queries.PipelineRunList(ctx, e.db, dbsqlc.PipelineRunListParams{PipelineID: f.PipelineID, Status: f.Status,
		Cursor: f.Cursor, Max: limit + 1})
	if err != nil {
		return Page[PipelineRun]{}, fmt.Errorf("list pipeline runs: %w", err)
	}
	items := make([]PipelineRun, len(rows))
	for i, r := range rows {
		items[i] = pipelineRunOf(dbsqlc.PipelineRunGetRow(r))
	}
	return paginate(items, limit, func(r PipelineRun) string { return r.ID }), nil
}

// GetPipelineRun returns a pipeline run with its snapshot, its map nodes' states and every task
// run, each flagged when its code version differs from the previous run of the same pipeline.
func (e *Engine) GetPipelineRun(ctx context.Context, id string) (PipelineRun, error) {
	return e.getPipelineRun(ctx, id, true)
}

// GetPipelineRunNodes is GetPipelineRun without the items of map nodes (their counts are in
// Maps): what GET /api/runs/{id}?items=false answers, bounded by the pipeline's size.
func (e *Engine) GetPipelineRunNodes(ctx context.Context, id string) (PipelineRun, error) {
	return e.getPipelineRun(ctx, id, false)
}

func (e *Engine) getPipelineRun(ctx context.Context, id string, items bool) (PipelineRun, error) {
	row, err := queries.PipelineRunGet(ctx, e.db, id)
	if errors.Is(err, database.ErrNotFound) {
		return PipelineRun{}, notFound("PIPELINE_RUN_NOT_FOUND", "pipeline run %q not found", id)
	}
	if err != nil {
		return PipelineRun{}, fmt.Errorf("read pipeline run %s: %w", id, err)
	}
	run := pipelineRunOf(row)
	if run.Maps, err = e.mapNodeStates(ctx, id, run.Snapshot); err != nil {
		return PipelineRun{}, err
	}
	rows, err := e.runTaskRows(ctx, id, items)
	if err != nil {
		return PipelineRun{}, fmt.Errorf("read task runs of %s: %w", id, err)
	}
	run.Tasks = make([]RunTask, len(rows))
	for i, r := range rows {
		t, err := runOf(dbsqlc.RunGetRow(r))
		if err != nil {
			return PipelineRun{}, fmt.Errorf("read task runs of %s: %w", id, err)
		}
		run.Tasks[i] = RunTask{Run: t, SupersededBy: r.SupersededBy}
	}
	prev := map[string]int{}
	versions, err := queries.PreviousCodeVersions(ctx, e.db, id)
	if err != nil {
		return PipelineRun{}, fmt.Errorf("read the previous run of %s: %w", id, err)
	}
	for _, v := range versions {
		prev[v.TaskID] = v.CodeVersion
	}
	for i := range run.Tasks {
		if v, ok := prev[run.Tasks[i].TaskID]; ok {
			run.Tasks[i].PreviousCodeVersion = &v
			run.Tasks[i].CodeChanged = v != run.Tasks[i].CodeVersion
		}
	}
	if err := e.readFamily(ctx, &run); err != nil {
		return PipelineRun{}, err
	}
	return run, nil
}

// CancelRun cancels a task run outside any pipeline run that has not ended: a pending run (also
// one waiting for its retry) is never claimed; the worker of a dispatched or running attempt
// learns it from shouldCancel on its next heartbeat, and its late callback changes nothing. A
// cancelled run goes to no DLQ. A finished run is 409 RUN_FINISHED with its status; a task run of
// a pipeline run is 409 PIPELINE_TASK_RUN (its pipeline run is what can be cancelled).
func (e *Engine) CancelRun(ctx context.Context, id string) (Run, error) {
	n, err := queries.CancelStandaloneRun(ctx, e.db, id)
	if err != nil {
		return Run{}, fmt.Errorf("cancel run %s: %w", id, err)
	}
	run, err := e.GetRun(ctx, id)
	if err != nil {
		return Run{}, err
	}
	switch {
	case n == 1:
		e.cfg.Signals.RunStatus.Send(RunStatus{ID: id, Status: protocol.StatusCancelled})
		// The run may have been in flight: that may end waiting_for_maintenance.
		e.settleIfWaiting(ctx)
		return run, nil
	case run.PipelineRunID != "":
		err := conflict("PIPELINE_TASK_RUN", "task run %q belongs to pipeline run %q: cancel the pipeline run (POST /api/runs/%s/cancel)",
			id, run.PipelineRunID, run.PipelineRunID)
		err.Details = map[string]any{"pipelineRunId": run.PipelineRunID}
		return Run{}, err
	default:
		err := conflict("RUN_FINISHED", "task run %q is already %s", id, run.Status)
		err.Details = map[string]any{"status": run.Status}
		return Run{}, err
	}
}

// CancelPipelineRun cancels a running pipeline run: what has not started is cancelled, running
// workers learn it from shouldCancel on their next heartbeat, and late callbacks change nothing.
func (e *Engine) CancelPipelineRun(ctx context.Context, id string) (PipelineRun, error) {
	var runs map[string]*lockedRun
	err := e.db.InTx(ctx, func(tx dbtx) error {
		var err error
		if runs, err = e.lockRuns(ctx, tx, []string{id}); err != nil {
			return err
		}
		run := runs[id]
		if run == nil {
			return notFound("PIPELINE_RUN_NOT_FOUND", "pipeline run %q not found", id)
		}
		if run.status != protocol.PipelineRunning {
			return conflict("PIPELINE_RUN_FINISHED", "pipeline run %q is already %s", id, run.status)
		}
		return e.endPipelineRun(ctx, tx, run, runEnd{status: protocol.PipelineCancelled, err: "cancelled by request",
			reason: "the pipeline run was cancelled"})
	})
	if err != nil {
		return PipelineRun{}, err
	}
	// The run, and the sub-pipeline relatives its end ended (its children; a child's parent).
	e.cfg.Signals.signalEnded(runs)
	return e.GetPipelineRun(ctx, id)
}

// runEnd is how endPipelineRun ends a pipeline run: its status, error and error code ("" =
// none), and the reason its open nodes are cancelled with.
type runEnd struct {
	status            protocol.PipelineRunStatus
	err, code, reason string
}

// endPipelineRun ends the running pipeline run run, which the caller locked (lockRuns) in tx:
// its nodes that have not ended (waiting, pending, dispatching, running) are cancelled with
// end.reason, so that running workers learn it from shouldCancel on their next heartbeat and
// their late callbacks change nothing, and the run takes end's status, error and code. Its open
// child runs are cancelled, and its parent's node ends (afterEnd, subpipelines.go).
func (e *Engine) endPipelineRun(ctx context.Context, tx dbtx, run *lockedRun, end runEnd) error {
	if err := queries.CancelPipelineNodes(ctx, tx, dbsqlc.CancelPipelineNodesParams{PipelineRunID: run.id,
		Statuses: statusTexts(protocol.StatusWaiting, protocol.StatusPending, protocol.StatusDispatching, protocol.StatusRunning),
		Reason:   end.reason}); err != nil {
		return fmt.Errorf("end pipeline run %s: cancel its nodes: %w", run.id, err)
	}
	if err := queries.FinishPipelineRun(ctx, tx, dbsqlc.FinishPipelineRunParams{ID: run.id, Status: end.status,
		Error: end.err, ErrorCode: end.code}); err != nil {
		return fmt.Errorf("end pipeline run %s: %w", run.id, err)
	}
	run.status, run.ended = end.status, true
	return e.afterEnd(ctx, tx, run)
}
