-- Dead letter queue.

-- name: DLQList :many
-- Filters: task_id and pipeline_id ('' = all), state ('' = all, 'open' = not retried yet,
-- 'retried'); cursor is an id ('' = from the newest), max the limit.
SELECT d.id, d.task_run_id, d.task_id, coalesce(d.pipeline_run_id, ''), coalesce(pr.pipeline_id, ''),
       d.input_path, coalesce(d.error, ''), coalesce(d.error_code, ''), d.attempts, d.code_version,
       d.code_hash, d.failed_at, d.retried_at, coalesce(d.retry_run_id, ''), coalesce(d.input, pr.input) AS input
FROM dlq d
LEFT JOIN pipeline_runs pr ON pr.id = d.pipeline_run_id
WHERE (sqlc.arg('task_id')::text = '' OR d.task_id = sqlc.arg('task_id')::text) AND (sqlc.arg('cursor')::text = '' OR d.id < sqlc.arg('cursor')::text)
  AND (sqlc.arg('pipeline_id')::text = '' OR pr.pipeline_id = sqlc.arg('pipeline_id')::text)
  AND (sqlc.arg('state')::text = '' OR (sqlc.arg('state')::text = 'open') = (d.retried_at IS NULL))
ORDER BY d.id DESC
LIMIT sqlc.arg('max')::int;

-- name: DLQGet :one
-- One entry, as DLQList lists it: input is the inline input (the entry's copy, or its pipeline
-- run's), NULL when it is stored at input_path.
SELECT d.id, d.task_run_id, d.task_id, coalesce(d.pipeline_run_id, ''), coalesce(pr.pipeline_id, ''),
       d.input_path, coalesce(d.error, ''), coalesce(d.error_code, ''), d.attempts, d.code_version,
       d.code_hash, d.failed_at, d.retried_at, coalesce(d.retry_run_id, ''), coalesce(d.input, pr.input) AS input
FROM dlq d
LEFT JOIN pipeline_runs pr ON pr.id = d.pipeline_run_id
WHERE d.id = sqlc.arg('id');

-- name: DLQOpenIDs :many
-- Up to max entries not retried yet, oldest first, of task task_id and pipeline pipeline_id ('' = any).
SELECT d.id
FROM dlq d
LEFT JOIN pipeline_runs pr ON pr.id = d.pipeline_run_id
WHERE d.retried_at IS NULL AND (sqlc.arg('task_id')::text = '' OR d.task_id = sqlc.arg('task_id')::text) AND (sqlc.arg('pipeline_id')::text = '' OR pr.pipeline_id = sqlc.arg('pipeline_id')::text)
ORDER BY d.id
LIMIT sqlc.arg('max')::int;

-- name: DLQCount :one
SELECT count(*) FROM dlq;

-- name: DLQTakeForRetry :one
-- Marks entry id as retried by run retry_run_id, once. concurrency_key: the failed run's, when
-- it still exists (NULL otherwise, or when it had none).
UPDATE dlq SET retried_at = now(), retry_run_id = sqlc.arg('retry_run_id')::text
WHERE dlq.id = sqlc.arg('id') AND dlq.retried_at IS NULL
RETURNING task_id, input_path, priority, metadata, coalesce(pipeline_run_id, ''), task_run_id, input,
          (SELECT tr.concurrency_key FROM task_runs tr WHERE tr.id = dlq.task_run_id) AS concurrency_key;

-- name: DLQRetryState :one
SELECT coalesce(retry_run_id, '') FROM dlq WHERE id = sqlc.arg('id');
