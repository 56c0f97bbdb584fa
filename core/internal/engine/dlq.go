package engine

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pipeweave/pipeweave/core/internal/ids"
)

var (
	sqlDLQList       = q("dlq_list")
	sqlDLQGet        = q("dlq_get")
	sqlDLQTake       = q("dlq_take_for_retry")
	sqlDLQRetryState = q("dlq_retry_state")
)

// DLQFilter selects DLQ entries.
type DLQFilter struct {
	TaskID, Cursor string
	Limit          int
}

// ListDLQ lists dead letter entries, newest first.
func (e *Engine) ListDLQ(ctx context.Context, f DLQFilter) (Page[DLQEntry], error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return Page[DLQEntry]{}, err
	}
	rows, err := e.pool.Query(ctx, sqlDLQList, f.TaskID, f.Cursor, limit+1)
	if err != nil {
		return Page[DLQEntry]{}, fmt.Errorf("list dlq: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DLQEntry, error) { return scanDLQ(row) })
	if err != nil {
		return Page[DLQEntry]{}, fmt.Errorf("list dlq: %w", err)
	}
	return paginate(items, limit, func(d DLQEntry) string { return d.ID }), nil
}

// GetDLQ returns one DLQ entry.
func (e *Engine) GetDLQ(ctx context.Context, id string) (DLQEntry, error) {
	d, err := scanDLQ(e.pool.QueryRow(ctx, sqlDLQGet, id))
	if err == pgx.ErrNoRows {
		return DLQEntry{}, notFound("DLQ_ENTRY_NOT_FOUND", "DLQ entry %q not found", id)
	}
	if err != nil {
		return DLQEntry{}, fmt.Errorf("read dlq entry %s: %w", id, err)
	}
	return d, nil
}

// RetryDLQ queues a new run for a DLQ entry with the same input, at the task's current code
// version. An entry is retried once; retrying it again is a conflict naming the retry run.
func (e *Engine) RetryDLQ(ctx context.Context, id string) (EnqueueResult, error) {
	runID := ids.New(ids.TaskRun)
	var res EnqueueResult
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var taskID, inputPath, pipelineRunID string
		var priority int
		var metadata []byte
		err := tx.QueryRow(ctx, sqlDLQTake, id, runID).Scan(&taskID, &inputPath, &priority, &metadata, &pipelineRunID)
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
		var t enqueueTask
		rows, err := tx.Query(ctx, sqlTasksForEnqueue, []string{taskID})
		if err != nil {
			return fmt.Errorf("read task: %w", err)
		}
		found := false
		for rows.Next() {
			var tid string
			if err := rows.Scan(&tid, &t.priority, &t.ttl, &t.codeVersion, &t.codeHash); err != nil {
				return fmt.Errorf("read task: %w", err)
			}
			found = true
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read task: %w", err)
		}
		if !found {
			return conflict("TASK_NOT_REGISTERED", "task %q is no longer registered", taskID)
		}
		if _, err := tx.Exec(ctx, sqlInsertRuns, []string{runID}, []string{taskID}, []int{priority}, []int64{0},
			[]string{inputPath}, []int{t.codeVersion}, []string{t.codeHash}, [][]byte{metadata}, []string{""}); err != nil {
			return fmt.Errorf("insert retry run: %w", err)
		}
		if _, err := tx.Exec(ctx, sqlNotifyReady); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		res = EnqueueResult{RunID: runID, Status: "queued", TaskID: taskID, InputPath: inputPath}
		return nil
	})
	return res, err
}
