package engine

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pipeweave/pipeweave/core/protocol"
)

var (
	sqlRunGet        = q("run_get")
	sqlRunList       = q("run_list")
	sqlQueueLive     = q("queue_live_counts")
	sqlQueueFinal    = q("queue_final_counts")
	sqlQueueOldest   = q("queue_oldest_pending")
	sqlDLQCount      = q("dlq_count")
	sqlServicesList  = q("services_list")
	sqlServiceExists = q("service_exists")
	sqlServiceTasks  = q("service_tasks")
	sqlTaskHistory   = q("task_history")
	sqlTaskExists    = q("task_exists")
)

// GetRun returns one task run.
func (e *Engine) GetRun(ctx context.Context, id string) (Run, error) {
	r, err := scanRun(e.pool.QueryRow(ctx, sqlRunGet, id))
	if err == pgx.ErrNoRows {
		return Run{}, notFound("RUN_NOT_FOUND", "task run %q not found", id)
	}
	if err != nil {
		return Run{}, fmt.Errorf("read run %s: %w", id, err)
	}
	return r, nil
}

// RunFilter selects runs for ListRuns.
type RunFilter struct {
	Status, TaskID, Cursor string
	Limit                  int
}

// ListRuns lists task runs, newest first, a page at a time.
func (e *Engine) ListRuns(ctx context.Context, f RunFilter) (Page[Run], error) {
	if f.Status != "" && !protocol.TaskRunStatus(f.Status).Valid() {
		return Page[Run]{}, invalid("INVALID_STATUS", "status must be one of %v", protocol.TaskRunStatuses)
	}
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return Page[Run]{}, err
	}
	if err := checkCursor(f.Cursor); err != nil {
		return Page[Run]{}, err
	}
	rows, err := e.pool.Query(ctx, sqlRunList, f.Status, f.TaskID, f.Cursor, limit+1)
	if err != nil {
		return Page[Run]{}, fmt.Errorf("list runs: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Run, error) { return scanRun(row) })
	if err != nil {
		return Page[Run]{}, fmt.Errorf("list runs: %w", err)
	}
	return paginate(items, limit, func(r Run) string { return r.ID }), nil
}

func pageLimit(n int) (int, error) {
	switch {
	case n == 0:
		return 50, nil
	case n < 0 || n > protocol.MaxPageSize:
		return 0, invalid("INVALID_LIMIT", "limit must be between 1 and %d", protocol.MaxPageSize)
	}
	return n, nil
}

// paginate trims the extra row fetched to learn whether another page exists.
func paginate[T any](items []T, limit int, id func(T) string) Page[T] {
	p := Page[T]{Items: items}
	if p.Items == nil {
		p.Items = []T{}
	}
	if len(items) > limit {
		p.Items = items[:limit]
		p.NextCursor = id(items[limit-1])
	}
	return p
}

// QueueStatus counts runs by state. Live states are counted over a partial index; final states
// come from counters kept by a trigger, so the cost does not grow with history.
func (e *Engine) QueueStatus(ctx context.Context) (QueueStatus, error) {
	var s QueueStatus
	counts := map[string]int64{}
	batch := &pgx.Batch{}
	collect := func(rows pgx.Rows) error {
		for rows.Next() {
			var st string
			var n int64
			if err := rows.Scan(&st, &n); err != nil {
				return err
			}
			counts[st] += n
		}
		return rows.Err()
	}
	batch.Queue(sqlQueueLive).Query(collect)
	batch.Queue(sqlQueueFinal).Query(collect)
	batch.Queue(sqlQueueOldest).QueryRow(func(row pgx.Row) error { return row.Scan(&s.OldestPending) })
	batch.Queue(sqlDLQCount).QueryRow(func(row pgx.Row) error { return row.Scan(&s.DLQ) })
	if err := e.pool.SendBatch(ctx, batch).Close(); err != nil {
		return s, fmt.Errorf("queue status: %w", err)
	}
	s.Pending, s.Dispatching, s.Running, s.Waiting = counts["pending"], counts["dispatching"], counts["running"], counts["waiting"]
	s.Completed, s.Failed, s.Cancelled, s.Skipped = counts["completed"], counts["failed"], counts["cancelled"], counts["skipped"]
	if s.OldestPending != nil {
		t := s.OldestPending.UTC()
		s.OldestPending = &t
	}
	return s, nil
}

// LiveCounts counts the task runs in each live state (waiting, pending, dispatching, running)
// with one query over a partial index; the metrics read it at scrape time.
func (e *Engine) LiveCounts(ctx context.Context) (map[string]int64, error) {
	rows, err := e.pool.Query(ctx, sqlQueueLive)
	if err != nil {
		return nil, fmt.Errorf("count live runs: %w", err)
	}
	defer rows.Close()
	counts := map[string]int64{}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count live runs: %w", err)
		}
		counts[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count live runs: %w", err)
	}
	return counts, nil
}

// Services lists the registered services with their active tasks.
func (e *Engine) Services(ctx context.Context) ([]Service, error) {
	rows, err := e.pool.Query(ctx, sqlServicesList)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Service, error) {
		var s Service
		var keyID string
		err := row.Scan(&s.ID, &s.Version, &s.BaseURL, &s.RegisteredAt, &s.UpdatedAt, &keyID, &s.Tasks)
		s.Secret = e.keys.Generation(keyID)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	return nonNil(out), nil
}

// ServiceTasks lists a service's tasks, orphaned ones included.
func (e *Engine) ServiceTasks(ctx context.Context, serviceID string) ([]Task, error) {
	var exists bool
	if err := e.pool.QueryRow(ctx, sqlServiceExists, serviceID).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read service: %w", err)
	}
	if !exists {
		return nil, notFound("SERVICE_NOT_FOUND", "service %q is not registered", serviceID)
	}
	rows, err := e.pool.Query(ctx, sqlServiceTasks, serviceID)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Task, error) {
		var t Task
		var schema, jsonSchema []byte
		err := row.Scan(&t.ID, &t.ServiceID, &t.CodeHash, &t.CodeVersion, &t.AllowedNext, &t.Timeout, &t.Retries,
			&t.RetryBackoff, &t.RetryDelayMs, &t.MaxRetryDelayMs, &t.HeartbeatIntervalMs, &t.Concurrency,
			&t.Priority, &t.IdempotencyTTL, &t.Description, &schema, &t.RemovedInVersion, &t.CreatedAt, &t.UpdatedAt, &jsonSchema)
		if len(schema) > 0 {
			t.InputSchema = schema
		}
		if len(jsonSchema) > 0 {
			t.InputJSONSchema = jsonSchema
		}
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return nonNil(out), nil
}

// TaskHistory lists a task's code versions, newest first.
func (e *Engine) TaskHistory(ctx context.Context, taskID string) ([]HistoryEntry, error) {
	var exists bool
	if err := e.pool.QueryRow(ctx, sqlTaskExists, taskID).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read task: %w", err)
	}
	if !exists {
		return nil, notFound("TASK_NOT_FOUND", "task %q is not registered", taskID)
	}
	rows, err := e.pool.Query(ctx, sqlTaskHistory, taskID)
	if err != nil {
		return nil, fmt.Errorf("task history: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (HistoryEntry, error) {
		var h HistoryEntry
		err := row.Scan(&h.CodeVersion, &h.CodeHash, &h.ServiceVersion, &h.RecordedAt)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("task history: %w", err)
	}
	return nonNil(out), nil
}
