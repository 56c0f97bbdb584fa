-- Dead letter queue.

-- name: dlq_list
-- $1 task id filter ('' = all), $2 cursor (id, '' = from the newest), $3 limit, $4 pipeline id
-- filter ('' = all), $5 state filter ('' = all, 'open' = not retried yet, 'retried').
SELECT d.id, d.task_run_id, d.task_id, coalesce(d.pipeline_run_id, ''), coalesce(pr.pipeline_id, ''),
       d.input_path, coalesce(d.error, ''), coalesce(d.error_code, ''), d.attempts, d.code_version,
       d.code_hash, d.failed_at, d.retried_at, coalesce(d.retry_run_id, '')
FROM dlq d
LEFT JOIN pipeline_runs pr ON pr.id = d.pipeline_run_id
WHERE ($1 = '' OR d.task_id = $1) AND ($2 = '' OR d.id < $2)
  AND ($4 = '' OR pr.pipeline_id = $4)
  AND ($5 = '' OR ($5 = 'open') = (d.retried_at IS NULL))
ORDER BY d.id DESC
LIMIT $3;

-- name: dlq_get
SELECT d.id, d.task_run_id, d.task_id, coalesce(d.pipeline_run_id, ''), coalesce(pr.pipeline_id, ''),
       d.input_path, coalesce(d.error, ''), coalesce(d.error_code, ''), d.attempts, d.code_version,
       d.code_hash, d.failed_at, d.retried_at, coalesce(d.retry_run_id, '')
FROM dlq d
LEFT JOIN pipeline_runs pr ON pr.id = d.pipeline_run_id
WHERE d.id = $1;

-- name: dlq_open_ids
-- Up to $3 entries not retried yet, oldest first, of task $1 and pipeline $2 ('' = any).
SELECT d.id
FROM dlq d
LEFT JOIN pipeline_runs pr ON pr.id = d.pipeline_run_id
WHERE d.retried_at IS NULL AND ($1 = '' OR d.task_id = $1) AND ($2 = '' OR pr.pipeline_id = $2)
ORDER BY d.id
LIMIT $3;

-- name: dlq_count
SELECT count(*) FROM dlq;

-- name: dlq_take_for_retry
-- Marks entry $1 as retried by run $2, once.
UPDATE dlq SET retried_at = now(), retry_run_id = $2
WHERE id = $1 AND retried_at IS NULL
RETURNING task_id, input_path, priority, metadata, coalesce(pipeline_run_id, ''), task_run_id;

-- name: dlq_retry_state
SELECT coalesce(retry_run_id, '') FROM dlq WHERE id = $1;
