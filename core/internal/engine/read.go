package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/pipeweave/pipeweave/core/protocol"
	"github.com/pipeweave/pipeweave/internal/database"
	"github.com/pipeweave/pipeweave/internal/dbsqlc"
)

// GetRun returns one task run.
func (e *Engine) GetRun(ctx context.Context, id string) (Run, error) {
	row, err := queries.RunGet(ctx, e.db, id)
	if errors.Is(err, database.ErrNotFound) {
		return Run{}, notFound("RUN_NOT_FOUND", "task run %q not found", id)
	}
	var r Run
	if err == nil {
		r, err = runOf(row)
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
	rows, err := queries.RunList(ctx, e.db, dbsqlc.RunListParams{Status: f.Status, TaskID: f.TaskID, Cursor: f.Cursor, Max: limit + 1})
	if err != nil {
		return Page[Run]{}, fmt.Errorf("list runs: %w", err)
	}
	items := make([]Run, len(rows))
	for i, row := range rows {
		if items[i], err = runOf(dbsqlc.RunGetRow(row)); err != nil {
			return Page[Run]{}, fmt.Errorf("list runs: %w", err)
		}
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
	q, err := queries.QueueStatus(ctx, e.db)
	if err != nil {
		return QueueStatus{}, fmt.Errorf("queue status: %w", err)
	}
	s := QueueStatus{OldestPending: q.OldestPending, DLQ: q.DLQ}
	counts := q.ByStatus
	s.Pending, s.Dispatching, s.Running, s.Waiting = counts["pending"], counts["dispatching"], counts["running"], counts["waiting"]
	s.Completed, s.Failed, s.Cancelled, s.Skipped = counts["completed"], counts["failed"], counts["cancelled"], counts["skipped"]
	if s.OldestPending != nil {
		t := s.OldestPending.UTC()
		s.OldestPending = &t
	}
	return s, nil
}

// LiveCounts counts the task runs in each live state (waiting, pending, dispatching, running)
// with one query, each status over a partial index; the metrics read it at scrape time.
func (e *Engine) LiveCounts(ctx context.Context) (map[string]int64, error) {
	rows, err := queries.QueueLiveCounts(ctx, e.db)
	if err != nil {
		return nil, fmt.Errorf("count live runs: %w", err)
	}
	counts := map[string]int64{}
	for _, r := range rows {
		counts[string(r.Status)] = r.Count
	}
	return counts, nil
}

// Services lists the registered services with their active tasks.
func (e *Engine) Services(ctx context.Context) ([]Service, error) {
	rows, err := queries.ServicesList(ctx, e.db)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	out := make([]Service, len(rows))
	for i, r := range rows {
		out[i] = Service{ID: r.ID, Version: r.Version, BaseURL: r.BaseURL, RegisteredAt: r.RegisteredAt, UpdatedAt: r.UpdatedAt,
			Tasks: r.TaskIDs, Secret: e.keys.Generation(r.KeyID)}
	}
	return out, nil
}

// ServiceTasks lists a service's tasks, orphaned ones included.
func (e *Engine) ServiceTasks(ctx context.Context, serviceID string) ([]Task, error) {
	exists, err := queries.ServiceExists(ctx, e.db, serviceID)
	if err != nil {
		return nil, fmt.Errorf("read service: %w", err)
	}
	if !exists {
		return nil, notFound("SERVICE_NOT_FOUND", "service %q is not registered", serviceID)
	}
	rows, err := queries.ServiceTasks(ctx, e.db, serviceID)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	out := make([]Task, len(rows))
	for i, r := range rows {
		out[i] = Task{ID: r.ID, ServiceID: r.ServiceID, CodeHash: r.CodeHash, CodeVersion: r.CodeVersion, AllowedNext: r.AllowedNext,
			Timeout: r.TimeoutSeconds, Retries: r.Retries, RetryBackoff: r.RetryBackoff, RetryDelayMs: r.RetryDelayMs,
			MaxRetryDelayMs: r.MaxRetryDelayMs, HeartbeatIntervalMs: r.HeartbeatIntervalMs, Concurrency: r.Concurrency,
			Priority: r.Priority, IdempotencyTTL: r.IdempotencyTtlSeconds, Description: r.Description,
			RemovedInVersion: r.RemovedInVersion, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, PausedAt: r.PausedAt,
			RateLimitKey: r.RateLimitKey, ConcurrencyKey: r.ConcurrencyKey, ConcurrencyPerKey: r.ConcurrencyPerKey}
		if r.RateLimit != nil && r.RateLimitPeriodMs != nil {
			out[i].RateLimit = &protocol.RateLimit{Limit: *r.RateLimit, PeriodMs: *r.RateLimitPeriodMs}
		}
		if len(r.InputSchema) > 0 {
			out[i].InputSchema = r.InputSchema
		}
		if len(r.InputJsonSchema) > 0 {
			out[i].InputJSONSchema = r.InputJsonSchema
		}
	}
	return out, nil
}

// TaskHistory lists a task's code versions, newest first.
func (e *Engine) TaskHistory(ctx context.Context, taskID string) ([]HistoryEntry, error) {
	exists, err := queries.TaskExists(ctx, e.db, taskID)
	if err != nil {
		return nil, fmt.Errorf("read task: %w", err)
	}
	if !exists {
		return nil, notFound("TASK_NOT_FOUND", "task %q is not registered", taskID)
	}
	rows, err := queries.TaskHistory(ctx, e.db, taskID)
	if err != nil {
		return nil, fmt.Errorf("task history: %w", err)
	}
	out := make([]HistoryEntry, len(rows))
	for i, r := range rows {
		out[i] = HistoryEntry(r)
	}
	return out, nil
}
