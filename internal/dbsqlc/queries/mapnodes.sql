-- Map nodes (migration 014, docs/dynamic-pipelines.md): fan-out and completion of a map row.
-- Every statement runs under the lock of the pipeline run (lockRuns).

-- name: MapOverOutput :one
-- The current row of node task_id of pipeline run pipeline_run_id (never an item) and its output.
SELECT id, status, output, coalesce(output_path, '') AS output_path
FROM task_runs
WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND task_id = sqlc.arg('task_id')::text
  AND item_index IS NULL AND superseded_by IS NULL;

-- name: InsertMapItems :exec
-- One pending item row per element of the arrays (a batch), of the map row map_row_id: same task,
-- run, priority, code version and trace; no predecessors (an item's upstream is its item).
-- inputs[i] is the item's inline input (NULL: stored at input_paths[i]). map_concurrency is the
-- node's maxConcurrency (NULL: none).
INSERT INTO task_runs (id, task_id, pipeline_run_id, status, priority, input_path, input, code_version,
                       code_hash, predecessors, preds_left, selected, traceparent, concurrency_key, item_index,
                       map_concurrency)
SELECT u.id, m.task_id, m.pipeline_run_id, 'pending', m.priority, u.input_path, u.input, m.code_version,
       m.code_hash, '{}', 0, true, m.traceparent, m.concurrency_key, u.item_index, sqlc.narg('map_concurrency')::int
FROM task_runs m,
     (SELECT unnest(sqlc.arg('ids')::text[]) AS id, unnest(sqlc.arg('input_paths')::text[]) AS input_path,
             unnest(sqlc.arg('inputs')::bytea[]) AS input, unnest(sqlc.arg('item_indexes')::int[]) AS item_index) AS u
WHERE m.id = sqlc.arg('map_row_id')::text;

-- name: StartMapRow :exec
-- The map row id waits for its n items (it stays waiting, which no claim takes, with items_left set).
UPDATE task_runs SET status = 'waiting', items_total = sqlc.arg('n')::int, items_left = sqlc.arg('n')::int, updated_at = now()
WHERE id = sqlc.arg('id')::text;

-- name: EndMapRow :exec
-- Ends the map row id: completed with its output (inline, or stored at output_path), or failed
-- with error and error_code.
UPDATE task_runs SET status = sqlc.arg('status')::text, output = sqlc.narg('output'), output_path = sqlc.narg('output_path'),
                     output_size = sqlc.narg('output_size'), error = sqlc.narg('error'), error_code = sqlc.narg('error_code'),
                     items_left = CASE WHEN items_left IS NOT NULL THEN 0 END,
                     completed_at = now(), updated_at = now()
WHERE id = sqlc.arg('id')::text;

-- name: MapItemsResolved :one
-- n items of map node task_id of run pipeline_run_id resolved: its open map row counts them down.
UPDATE task_runs SET items_left = items_left - sqlc.arg('n')::int, updated_at = now()
WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND task_id = sqlc.arg('task_id')::text
  AND item_index IS NULL AND superseded_by IS NULL AND status = 'waiting' AND items_left IS NOT NULL
RETURNING id, items_left;

-- name: MapItemOutputs :many
-- The items of map node task_id of run pipeline_run_id in index order, with their outputs.
SELECT item_index::int AS item_index, status, output, coalesce(output_path, '') AS output_path
FROM task_runs
WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND task_id = sqlc.arg('task_id')::text
  AND item_index IS NOT NULL AND superseded_by IS NULL
ORDER BY item_index;
