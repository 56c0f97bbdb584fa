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
-- The map row id waits for its n items (it stays waiting, which no claim takes, with items_left
-- set); so does a spawning row (just completed by its callback, its output kept) for its n
-- spawned runs.
UPDATE task_runs SET status = 'waiting', items_total = sqlc.arg('n')::int, items_left = sqlc.arg('n')::int,
                     completed_at = NULL, updated_at = now()
WHERE id = sqlc.arg('id')::text;

-- name: EndMapRow :exec
-- Ends the map row or spawning row id: completed with its output (inline, or stored at
-- output_path), or failed with error and error_code, keeping what output it had (a spawning
-- row's own).
UPDATE task_runs SET status = sqlc.arg('status')::text,
                     output      = CASE WHEN sqlc.arg('status')::text = 'completed' THEN sqlc.narg('output') ELSE output END,
                     output_path = CASE WHEN sqlc.arg('status')::text = 'completed' THEN sqlc.narg('output_path') ELSE output_path END,
                     output_size = CASE WHEN sqlc.arg('status')::text = 'completed' THEN sqlc.narg('output_size') ELSE output_size END,
                     error = sqlc.narg('error'), error_code = sqlc.narg('error_code'),
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
  AND item_index IS NOT NULL AND superseded_by IS NULL AND spawned_by IS NULL
ORDER BY item_index;

-- name: TaskRunsEstimate :one
-- The planner's count of task_runs rows (pg_class.reltuples; -1 before the first ANALYZE).
SELECT reltuples::float8 AS tuples FROM pg_catalog.pg_class WHERE oid = 'task_runs'::regclass;

-- name: AnalyzeTaskRuns :exec
-- Refreshes the planner's statistics of task_runs (and with them every session's cached plans
-- of statements that read it) after a fan-out grew it by a large share (mapstats.go).
ANALYZE task_runs;

-- name: InsertRetryItem :exec
-- The DLQ retry of map item or spawned run old_id (which the caller superseded): a pending run
-- of the same task, map row or spawning row (spawned_by), index, input (inline or at the same
-- path), key, bound (maxConcurrency) and trace, at the task's current code version.
INSERT INTO task_runs (id, task_id, pipeline_run_id, status, priority, input_path, input, code_version,
                       code_hash, metadata, predecessors, preds_left, selected, traceparent, concurrency_key, item_index,
                       map_concurrency, spawned_by)
SELECT sqlc.arg('id')::text, old.task_id, old.pipeline_run_id, 'pending', old.priority, old.input_path, old.input, t.code_version,
       t.code_hash, old.metadata, '{}', 0, true, old.traceparent, old.concurrency_key, old.item_index, old.map_concurrency,
       old.spawned_by
FROM task_runs old JOIN tasks t ON t.id = old.task_id
WHERE old.id = sqlc.arg('old_id')::text;

-- name: ReopenMapRow :one
-- Re-opens map row map_row_id (node task_id of run pipeline_run_id) for a DLQ retry: its items
-- that were cancelled go back to pending, and the map row waits again, output and error
-- cleared, for every item that has not resolved (the statement's snapshot sees the reset items
-- still cancelled: they are added). Items that completed or failed stay as they are.
WITH reset AS (
    UPDATE task_runs SET status = 'pending', error = NULL, error_code = NULL, completed_at = NULL, deadline = NULL,
                         available_at = now(), updated_at = now()
    WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND task_id = sqlc.arg('task_id')::text
      AND item_index IS NOT NULL AND superseded_by IS NULL AND spawned_by IS NULL AND status = 'cancelled'
    RETURNING id
)
UPDATE task_runs m SET
    status      = 'waiting',
    items_left  = (SELECT count(*) FROM task_runs i
                   WHERE i.pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND i.task_id = sqlc.arg('task_id')::text
                     AND i.item_index IS NOT NULL AND i.superseded_by IS NULL AND i.spawned_by IS NULL
                     AND i.status NOT IN ('completed', 'failed', 'cancelled', 'skipped'))
                  + (SELECT count(*) FROM reset),
    output = NULL, output_path = NULL, output_size = NULL, error = NULL, error_code = NULL,
    completed_at = NULL, updated_at = now()
WHERE m.id = sqlc.arg('map_row_id')::text
RETURNING items_left::int AS items_left;

-- name: MapRowOpen :execrows
-- Counts map row map_row_id up by one item (a DLQ retry of one of its items) when it still
-- waits for items; no row when it ended.
UPDATE task_runs SET items_left = items_left + 1, updated_at = now()
WHERE id = sqlc.arg('map_row_id')::text AND status = 'waiting' AND items_left IS NOT NULL;

-- name: InsertRerunNode :exec
-- A node that ran on a map's output, which a DLQ retry re-opens: a new row of node old_id
-- (which the caller superseded) waiting for its predecessors, at the task's current code
-- version; the caller then sets its state as for any re-opened node (ReopenNode).
INSERT INTO task_runs (id, task_id, pipeline_run_id, status, priority, input_path, code_version,
                       code_hash, metadata, predecessors, preds_left, selected, traceparent, concurrency_key)
SELECT sqlc.arg('id')::text, old.task_id, old.pipeline_run_id, 'waiting', old.priority, old.input_path, t.code_version,
       t.code_hash, old.metadata, old.predecessors, cardinality(old.predecessors), false, old.traceparent, old.concurrency_key
FROM task_runs old JOIN tasks t ON t.id = old.task_id
WHERE old.id = sqlc.arg('old_id')::text;
