-- Reads for the shapes of upstream's API (packages/shared/src/types/api.ts).

-- name: dlq_total
-- How many DLQ entries match the filter of dlq_list: $1 task id, $2 pipeline id, $3 state
-- ('' = all for each).
SELECT count(*)
FROM dlq d
LEFT JOIN pipeline_runs pr ON pr.id = d.pipeline_run_id
WHERE ($1 = '' OR d.task_id = $1)
  AND ($2 = '' OR pr.pipeline_id = $2)
  AND ($3 = '' OR ($3 = 'open') = (d.retried_at IS NULL));

-- name: run_code_version
SELECT code_version FROM task_runs WHERE id = $1;

-- name: service_get
-- One registered service: $1 service id.
SELECT id, version, base_url, registered_at, updated_at
FROM services
WHERE id = $1;
