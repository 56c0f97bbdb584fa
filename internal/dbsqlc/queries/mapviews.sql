-- Map node views (issue 15, item 4): the state of a run's map nodes for GET /api/runs/{id}, the
-- CLI's status and the dashboard, and a page of one map node's items. Both read only the run's
-- rows of the map nodes through task_runs_pipeline_node (pipeline_run_id, task_id, item_index).

-- name: MapNodeCounts :many
-- The current rows of tasks task_ids of pipeline run pipeline_run_id grouped by task, by whether
-- the row is the map row (item_index NULL) or an item, and by status: one row per group, with
-- the map row's id and items_total (-1: not fanned out yet; a group of map rows has one row).
SELECT task_id, (item_index IS NULL)::bool AS map_row, status, count(*)::int AS n,
       min(id)::text AS id, coalesce(max(items_total), -1)::int AS items_total
FROM task_runs
WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND task_id = ANY(sqlc.arg('task_ids')::text[])
  AND superseded_by IS NULL AND spawned_by IS NULL
GROUP BY task_id, item_index IS NULL, status;

-- name: MapItemsPage :many
-- A page of the items of map node task_id of pipeline run pipeline_run_id in index order, after
-- index after (-1: from the first), with status status ('' = any), at most max rows.
SELECT id, item_index::int AS item_index, status, attempt, coalesce(error, '') AS error,
       coalesce(error_code, '') AS error_code, input_path, coalesce(output_path, '') AS output_path,
       started_at, completed_at, updated_at
FROM task_runs
WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND task_id = sqlc.arg('task_id')::text
  AND item_index > sqlc.arg('after')::int AND superseded_by IS NULL AND spawned_by IS NULL
  AND (sqlc.arg('status')::text = '' OR status = sqlc.arg('status')::text)
ORDER BY item_index
LIMIT sqlc.arg('max')::int;

