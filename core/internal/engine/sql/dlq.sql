-- Dead letter queue.

-- name: dlq_list
-- $1 task id filter ('' = all), $2 cursor (id, '' = from the newest), $3 limit.
SELECT id, task_run_id, task_id, coalesce(pipeline_run_id, ''), input_path, coalesce(error, ''),
       coalesce(error_code, ''), attempts, code_version, code_hash, failed_at, retried_at,
       coalesce(retry_run_id, '')
FROM dlq
WHERE ($1 = '' OR task_id = $1) AND ($2 = '' OR id < $2)
ORDER BY id DESC
LIMIT $3;

-- name: dlq_get
SELECT id, task_run_id, task_id, coalesce(pipeline_run_id, ''), input_path, coalesce(error, ''),
       coalesce(error_code, ''), attempts, code_version, code_hash, failed_at, retried_at,
       coalesce(retry_run_id, '')
FROM dlq WHERE id = $1;

-- name: dlq_count
SELECT count(*) FROM dlq;

-- name: dlq_take_for_retry
-- Marks entry $1 as retried by run $2, once.
UPDATE dlq SET retried_at = now(), retry_run_id = $2
WHERE id = $1 AND retried_at IS NULL
RETURNING task_id, input_path, priority, metadata, coalesce(pipeline_run_id, ''), task_run_id;

-- name: dlq_retry_state
SELECT coalesce(retry_run_id, '') FROM dlq WHERE id = $1;
