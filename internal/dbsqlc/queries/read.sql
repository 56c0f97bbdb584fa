-- Read models for the API.

-- name: RunGet :one
SELECT id, task_id, coalesce(pipeline_run_id, ''), status, attempt, priority, coalesce(error, ''),
       coalesce(error_code, ''), previous_attempts, code_version, code_hash, input_path,
       coalesce(output_path, ''), output_size, assets, coalesce(logs_path, ''), selected_next,
       progress, coalesce(progress_message, ''), metadata, coalesce(idempotency_key, ''),
       created_at, updated_at, coalesce(parked_available_at, available_at) AS available_at, started_at, completed_at, deadline,
       coalesce(superseded_by, '') AS superseded_by, coalesce(schedule_id, '') AS schedule_id, schedule_slot,
       item_index, items_total, items_left, coalesce(spawned_by, '') AS spawned_by
FROM task_runs WHERE id = sqlc.arg('id');

-- name: RunList :many
-- Filters status and task_id ('' = all); cursor is an id ('' = newest), max the limit.
SELECT id, task_id, coalesce(pipeline_run_id, ''), status, attempt, priority, coalesce(error, ''),
       coalesce(error_code, ''), previous_attempts, code_version, code_hash, input_path,
       coalesce(output_path, ''), output_size, assets, coalesce(logs_path, ''), selected_next,
       progress, coalesce(progress_message, ''), metadata, coalesce(idempotency_key, ''),
       created_at, updated_at, coalesce(parked_available_at, available_at) AS available_at, started_at, completed_at, deadline,
       coalesce(superseded_by, '') AS superseded_by, coalesce(schedule_id, '') AS schedule_id, schedule_slot,
       item_index, items_total, items_left, coalesce(spawned_by, '') AS spawned_by
FROM task_runs
WHERE (sqlc.arg('status')::text = '' OR status = sqlc.arg('status')::text) AND (sqlc.arg('task_id')::text = '' OR task_id = sqlc.arg('task_id')::text) AND (sqlc.arg('cursor')::text = '' OR id < sqlc.arg('cursor')::text)
ORDER BY id DESC
LIMIT sqlc.arg('max')::int;

-- name: QueueLiveCounts :many
-- Live work only, each status through a partial index whose predicate it implies
-- (task_runs_waiting, task_runs_pending, task_runs_inflight; migrations/022_fewer_run_indexes.sql).
SELECT 'waiting'::text AS status, count(*) FROM task_runs WHERE status = 'waiting'
UNION ALL
SELECT 'pending', count(*) FROM task_runs WHERE status = 'pending'
UNION ALL
SELECT 'dispatching', count(*) FROM task_runs WHERE status = 'dispatching'
UNION ALL
SELECT 'running', count(*) FROM task_runs WHERE status = 'running';

-- name: QueueFinalCounts :many
-- Folded counts plus the deltas not folded yet.
SELECT status, sum(n)::bigint AS count FROM (
    SELECT status, n FROM run_status_counts
    UNION ALL
    SELECT status, n FROM run_status_deltas
) c GROUP BY status;

-- name: FoldStatusDeltas :exec
-- Moves the deltas into the counts. Concurrent folds never count a delta twice: a row one
-- DELETE removed is gone for the other.
WITH moved AS (
    DELETE FROM run_status_deltas RETURNING status, n
), summed AS (
    SELECT status, sum(n) AS n FROM moved GROUP BY status
)
INSERT INTO run_status_counts AS c (status, n) SELECT status, n FROM summed
ON CONFLICT (status) DO UPDATE SET n = c.n + excluded.n;

-- name: QueueOldestPending :one
SELECT min(available_at) AS oldest FROM task_runs WHERE status = 'pending';

-- name: ServicesList :many
SELECT s.id, s.version, s.base_url, s.registered_at, s.updated_at, coalesce(s.key_id, ''),
       coalesce(array_agg(t.id ORDER BY t.id) FILTER (WHERE t.id IS NOT NULL AND t.removed_in_version IS NULL), '{}')::text[] AS task_ids
FROM services s
LEFT JOIN tasks t ON t.service_id = s.id
GROUP BY s.id
ORDER BY s.id;

-- name: ServiceExists :one
SELECT EXISTS (SELECT 1 FROM services WHERE id = sqlc.arg('id'));

-- name: ServiceTasks :many
SELECT id, service_id, code_hash, code_version, allowed_next, timeout_seconds, retries, retry_backoff,
       retry_delay_ms, max_retry_delay_ms, heartbeat_interval_ms, concurrency, priority,
       idempotency_ttl_seconds, description, input_schema, coalesce(removed_in_version, ''),
       created_at, updated_at, input_json_schema, paused_at, rate_limit, rate_limit_period_ms,
       coalesce(rate_limit_key, '') AS rate_limit_key, coalesce(concurrency_key, '') AS concurrency_key,
       coalesce(concurrency_per_key, 0) AS concurrency_per_key
FROM tasks WHERE service_id = sqlc.arg('service_id') ORDER BY id;

-- name: TaskHistory :many
SELECT code_version, code_hash, service_version, recorded_at
FROM task_code_history WHERE task_id = sqlc.arg('task_id') ORDER BY code_version DESC;

-- name: TaskExists :one
SELECT EXISTS (SELECT 1 FROM tasks WHERE id = sqlc.arg('id'));

-- name: PausedList :many
-- The task types and pipelines paused now (kind 'task' or 'pipeline'), for /metrics.
SELECT 'task'::text AS kind, id FROM tasks WHERE paused_at IS NOT NULL
UNION ALL
SELECT 'pipeline'::text AS kind, id FROM pipelines WHERE paused_at IS NOT NULL
ORDER BY 1, 2;
