-- Reads for the shapes of upstream's API (packages/shared/src/types/api.ts).

-- name: DLQTotal :one
-- How many DLQ entries match the filter of DLQList: task_id, pipeline_id, state ('' = all for
-- each).
SELECT count(*)
FROM dlq d
LEFT JOIN pipeline_runs pr ON pr.id = d.pipeline_run_id
WHERE (sqlc.arg('task_id')::text = '' OR d.task_id = sqlc.arg('task_id')::text)
  AND (sqlc.arg('pipeline_id')::text = '' OR pr.pipeline_id = sqlc.arg('pipeline_id')::text)
  AND (sqlc.arg('state')::text = '' OR (sqlc.arg('state')::text = 'open') = (d.retried_at IS NULL));

-- name: RunCodeVersion :one
SELECT code_version FROM task_runs WHERE id = sqlc.arg('id');

-- name: ServiceGet :one
-- One registered service.
SELECT id, version, base_url, registered_at, updated_at
FROM services
WHERE id = sqlc.arg('id');
