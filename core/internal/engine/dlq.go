package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pipeweave/pipeweave/core/internal/ids"
	"github.com/pipeweave/pipeweave/core/internal/telemetry"
	"github.com/pipeweave/pipeweave/core/protocol"
)

var (
	sqlPipelineNodesState = q("pipeline_nodes_state")
	sqlReopenNode         = q("reopen_node")
	sqlSupersedeNode      = q("supersede_node")
	sqlInsertRetryNode    = q("insert_retry_node")
	sqlReopenPipelineRun  = q("reopen_pipeline_run")
	sqlDLQList            = q("dlq_list")
	sqlDLQGet             = q("dlq_get")
	sqlDLQTake            = q("dlq_take_for_retry")
	sqlDLQRetryState      = q("dlq_retry_state")
	sqlDLQOpenIDs         = q("dlq_open_ids")
)

// DLQFilter selects DLQ entries. State is "" (all), "open" (not retried yet) or "retried".
type DLQFilter struct {
	TaskID, PipelineID, State, Cursor string
	Limit                             int
}

// DLQPage is one page of the DLQ with the number of entries the filter matches.
type DLQPage = protocol.DLQPage

// ListDLQ lists dead letter entries, newest first, with each entry's input inline when it is
// small (see inlineInputs) and the number of entries the filter matches.
func (e *Engine) ListDLQ(ctx context.Context, f DLQFilter) (DLQPage, error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return DLQPage{}, err
	}
	switch f.State {
	case "", "open", "retried":
	default:
		return DLQPage{}, invalid("INVALID_STATE", "state must be open or retried, got %q", f.State)
	}
	if err := checkCursor(f.Cursor); err != nil {
		return DLQPage{}, err
	}
	rows, err := e.pool.Query(ctx, sqlDLQList, f.TaskID, f.Cursor, limit+1, f.PipelineID, f.State)
	if err != nil {
		return DLQPage{}, fmt.Errorf("list dlq: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DLQEntry, error) { return scanDLQ(row) })
	if err != nil {
		return DLQPage{}, fmt.Errorf("list dlq: %w", err)
	}
	page := paginate(items, limit, func(d DLQEntry) string { return d.ID })
	out := DLQPage{Items: page.Items, NextCursor: page.NextCursor}
	if err := e.pool.QueryRow(ctx, sqlDLQTotal, f.TaskID, f.PipelineID, f.State).Scan(&out.Total); err != nil {
		return DLQPage{}, fmt.Errorf("count dlq: %w", err)
	}
	e.inlineInputs(ctx, out.Items)
	return out, nil
}

// GetDLQ returns one DLQ entry, with its input inline when it is small.
func (e *Engine) GetDLQ(ctx context.Context, id string) (DLQEntry, error) {
	d, err := scanDLQ(e.pool.QueryRow(ctx, sqlDLQGet, id))
	if err == pgx.ErrNoRows {
		return DLQEntry{}, notFound("DLQ_ENTRY_NOT_FOUND", "DLQ entry %q not found", id)
	}
	if err != nil {
		return DLQEntry{}, fmt.Errorf("read dlq entry %s: %w", id, err)
	}
	items := []DLQEntry{d}
	e.inlineInputs(ctx, items)
	return items[0], nil
}

// RetryDLQ queues a new run for a DLQ entry with the same input, at the task's current code
// version. When the failed run belonged to a pipeline run, the new run takes its place in that
// run, which re-opens and continues the DAG from there. An entry is retried once; retrying it
// again is a conflict naming the retry run.
func (e *Engine) RetryDLQ(ctx context.Context, id string) (DLQRetryResult, error) {
	runID := ids.New(ids.TaskRun)
	var res DLQRetryResult
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var taskID, inputPath, pipelineRunID, failedRunID string
		var priority int
		var metadata []byte
		err := tx.QueryRow(ctx, sqlDLQTake, id, runID).Scan(&taskID, &inputPath, &priority, &metadata, &pipelineRunID, &failedRunID)
		if err == pgx.ErrNoRows {
			var retryRun string
			switch err := tx.QueryRow(ctx, sqlDLQRetryState, id).Scan(&retryRun); {
			case err == pgx.ErrNoRows:
				return notFound("DLQ_ENTRY_NOT_FOUND", "DLQ entry %q not found", id)
			case err != nil:
				return fmt.Errorf("read dlq entry %s: %w", id, err)
			}
			e := conflict("ALREADY_RETRIED", "DLQ entry %q was already retried as run %q", id, retryRun)
			e.Details = map[string]string{"retryRunId": retryRun}
			return e
		}
		if err != nil {
			return fmt.Errorf("take dlq entry %s: %w", id, err)
		}
		if pipelineRunID != "" {
			if err := e.reopen(ctx, tx, pipelineRunID, failedRunID, runID); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, sqlRunCodeVersion, runID).Scan(&res.CodeVersion); err != nil {
				return fmt.Errorf("read the code version of %s: %w", runID, err)
			}
			res.RunID, res.NewRunID, res.Status, res.TaskID, res.InputPath = runID, runID, "queued", taskID, inputPath
			return nil
		}
		tasks, err := e.enqueueTasks(ctx, tx, []string{taskID})
		if err != nil {
			return err
		}
		t, found := tasks[taskID]
		if !found {
			return conflict("TASK_NOT_REGISTERED", "task %q is no longer registered", taskID)
		}
		if _, err := tx.Exec(ctx, sqlInsertRuns, []string{runID}, []string{taskID}, []int{priority}, []int64{0},
			[]string{inputPath}, []int{t.codeVersion}, []string{t.codeHash}, [][]byte{metadata}, []string{""},
			[]string{telemetry.Traceparent(ctx)}); err != nil {
			return fmt.Errorf("insert retry run: %w", err)
		}
		if _, err := tx.Exec(ctx, sqlNotifyReady); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		res = DLQRetryResult{NewRunID: runID, RunID: runID, Status: "queued", CodeVersion: t.codeVersion, TaskID: taskID, InputPath: inputPath}
		return nil
	})
	return res, err
}

// DLQRetryResult is the run a DLQ retry queued.
type DLQRetryResult = protocol.DLQRetryResult

// RetryAllResult reports a bulk DLQ retry.
type RetryAllResult = protocol.RetryAllResult

// DLQRetried pairs a retried DLQ entry with the run that retries it.
type DLQRetried = protocol.DLQRetried

// DLQRetryFailed is an entry a bulk retry could not retry, with the reason.
type DLQRetryFailed = protocol.DLQRetryFailed

// RetryAllDLQ retries, oldest first, up to limit entries not retried yet of task taskID and
// pipeline pipelineID ("" = any), each in its own transaction like RetryDLQ. An entry another
// caller retried meanwhile is left out; one that cannot be retried (its task or pipeline run is
// gone, say) is reported in Failed and the others go on.
func (e *Engine) RetryAllDLQ(ctx context.Context, taskID, pipelineID string, limit int) (RetryAllResult, error) {
	if limit <= 0 || limit > maxRetryAll {
		limit = maxRetryAll
	}
	rows, err := e.pool.Query(ctx, sqlDLQOpenIDs, taskID, pipelineID, limit+1)
	if err != nil {
		return RetryAllResult{}, fmt.Errorf("list dlq entries to retry: %w", err)
	}
	idList, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return RetryAllResult{}, fmt.Errorf("list dlq entries to retry: %w", err)
	}
	res := RetryAllResult{Runs: []DLQRetried{}, Failed: []DLQRetryFailed{}}
	if len(idList) > limit {
		res.More, idList = true, idList[:limit]
	}
	for _, id := range idList {
		r, err := e.RetryDLQ(ctx, id)
		var ee *Error
		switch {
		case err == nil:
			res.Retried++
			res.Runs = append(res.Runs, DLQRetried{DLQID: id, RunID: r.RunID, TaskID: r.TaskID})
		case errors.As(err, &ee) && ee.Code == "ALREADY_RETRIED":
		case errors.As(err, &ee):
			res.Failed = append(res.Failed, DLQRetryFailed{DLQID: id, Code: ee.Code, Error: ee.Msg})
		default:
			return res, err
		}
	}
	return res, nil
}

// maxRetryAll bounds one bulk retry; callers repeat while More is true.
const maxRetryAll = 500

// PurgeDLQ deletes DLQ entries that failed more than olderThan ago, in bounded chunks.
func (e *Engine) PurgeDLQ(ctx context.Context, olderThan time.Duration) (int64, error) {
	const chunk = 1000
	return e.deleteChunks(ctx, "dlq entries", sqlPurgeDLQ, []any{olderThan.Milliseconds(), chunk}, chunk, time.Time{})
}

// reopen replaces the failed node failedRunID of pipeline run prun with a new pending task run
// newRunID and puts every node that was skipped or cancelled back to the state its
// predecessors now call for, so the DAG continues from the retried task.
func (e *Engine) reopen(ctx context.Context, tx pgx.Tx, prun, failedRunID, newRunID string) error {
	runs, err := e.lockRuns(ctx, tx, []string{prun})
	if err != nil {
		return err
	}
	run := runs[prun]
	switch {
	case run == nil:
		return conflict("PIPELINE_RUN_GONE", "pipeline run %q no longer exists", prun)
	case run.status == protocol.PipelineCancelled:
		return conflict("PIPELINE_RUN_CANCELLED", "pipeline run %q was cancelled; trigger the pipeline again instead", prun)
	}
	tag, err := tx.Exec(ctx, sqlSupersedeNode, failedRunID, newRunID)
	if err != nil {
		return fmt.Errorf("supersede %s: %w", failedRunID, err)
	}
	if tag.RowsAffected() != 1 {
		return conflict("RUN_ALREADY_REPLACED", "task run %q is no longer part of pipeline run %q", failedRunID, prun)
	}
	if _, err := tx.Exec(ctx, sqlInsertRetryNode, failedRunID, newRunID); err != nil {
		return fmt.Errorf("insert retry of %s: %w", failedRunID, err)
	}
	type nodeState struct {
		id             string
		status         protocol.TaskRunStatus
		selectedNext   []string
		upstreamFailed bool
	}
	nodes := map[string]*nodeState{}
	rows, err := tx.Query(ctx, sqlPipelineNodesState, prun)
	if err != nil {
		return fmt.Errorf("read nodes of %s: %w", prun, err)
	}
	for rows.Next() {
		var n nodeState
		var taskID string
		if err := rows.Scan(&n.id, &taskID, &n.status, &n.selectedNext, &n.upstreamFailed); err != nil {
			rows.Close()
			return fmt.Errorf("read nodes of %s: %w", prun, err)
		}
		nodes[taskID] = &n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read nodes of %s: %w", prun, err)
	}
	g := &Graph{EntryTasks: run.snap.EntryTasks, Tasks: run.snap.Tasks}
	depth := g.levels()
	order := g.sortedIDs()
	slices.SortStableFunc(order, func(a, b string) int { return depth[a] - depth[b] })
	for _, taskID := range order {
		n := nodes[taskID]
		if n == nil || (n.status != protocol.StatusSkipped && n.status != protocol.StatusCancelled) {
			continue
		}
		left, selected, failed := 0, false, false
		preds := run.snap.Tasks[taskID].Predecessors
		for _, p := range preds {
			pn := nodes[p]
			switch {
			case pn == nil:
			case pn.status == protocol.StatusCompleted:
				selected = selected || selects(true, pn.selectedNext, taskID)
			case pn.status == protocol.StatusFailed:
				failed = true
			case pn.status == protocol.StatusSkipped || pn.status == protocol.StatusCancelled:
				failed = failed || (pn.upstreamFailed && run.mode == Continue)
			default:
				left++
			}
		}
		status := protocol.StatusWaiting
		switch {
		case left > 0:
		case len(preds) == 0:
			status, selected = protocol.StatusPending, true
		case run.mode == Continue && failed:
			status = protocol.StatusSkipped
		case selected:
			status = protocol.StatusPending
		default:
			status = protocol.StatusSkipped
		}
		n.status, n.upstreamFailed = status, failed
		if _, err := tx.Exec(ctx, sqlReopenNode, n.id, status, left, selected, failed); err != nil {
			return fmt.Errorf("re-open %s: %w", n.id, err)
		}
	}
	if _, err := tx.Exec(ctx, sqlReopenPipelineRun, prun); err != nil {
		return fmt.Errorf("re-open %s: %w", prun, err)
	}
	if _, err := tx.Exec(ctx, sqlNotifyReady); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}
