-- Spawn nodes (migration 018, docs/dynamic-pipelines.md): task runs a spawn node's callback
-- starts, and the spawning row that waits for them. Every statement but SpawnSource and
-- SpawnTasks runs under the lock of the pipeline run (lockRuns).

-- name: SpawnSource :one
-- What a spawning callback of task run id is checked against: its task, its status, its pipeline
-- run ('' = none), whether it is an item or a spawned run, and its node's spawn and map
-- declarations and service in the run's snapshot (NULL / '' when the node has none).
SELECT tr.task_id, tr.status, coalesce(tr.pipeline_run_id, '')::text AS pipeline_run_id, (tr.item_index IS NOT NULL)::bool AS is_item,
       (tr.spawned_by IS NOT NULL)::bool AS is_spawned,
       (pr.snapshot -> 'tasks' -> tr.task_id -> 'spawn')::jsonb AS spawn,
       (pr.snapshot -> 'tasks' -> tr.task_id -> 'map')::jsonb AS map_decl,
       coalesce(pr.snapshot -> 'tasks' -> tr.task_id ->> 'serviceId', '')::text AS service_id
FROM task_runs tr LEFT JOIN pipeline_runs pr ON pr.id = tr.pipeline_run_id
WHERE tr.id = sqlc.arg('id')::text;

-- name: SpawnTasks :many
-- The active tasks among ids registered by service service_id, with what a spawned run needs.
SELECT id, code_version, code_hash, coalesce(concurrency_key, '') AS concurrency_key
FROM tasks
WHERE id = ANY(sqlc.arg('ids')::text[]) AND service_id = sqlc.arg('service_id')::text AND removed_in_version IS NULL;

-- name: InsertSpawned :exec
-- One pending run per entry of the arrays, spawned by row spawned_by: same pipeline run,
-- priority and trace; task, index, input (inline, or stored at input_paths[i] when inputs[i] is
-- NULL), code version and key per entry; no predecessors. With bound (the node's
-- maxConcurrency; NULL: none), the runs from index bound on are held (available_at
-- '9999-12-31', migration 019) until ReleaseSpawned.
INSERT INTO task_runs (id, task_id, pipeline_run_id, status, priority, input_path, input, code_version,
                       code_hash, predecessors, preds_left, selected, traceparent, concurrency_key, item_index, spawned_by,
                       available_at)
SELECT u.id, u.task_id, s.pipeline_run_id, 'pending', s.priority, u.input_path, u.input, u.code_version,
       u.code_hash, '{}', 0, true, s.traceparent, nullif(u.concurrency_key, '-'), u.item_index, s.id,
       CASE WHEN u.item_index >= sqlc.narg('bound')::int THEN '9999-12-31 00:00:00+00'::timestamptz ELSE now() END
FROM task_runs s,
     (SELECT unnest(sqlc.arg('ids')::text[]) AS id, unnest(sqlc.arg('task_ids')::text[]) AS task_id,
             unnest(sqlc.arg('input_paths')::text[]) AS input_path, unnest(sqlc.arg('inputs')::bytea[]) AS input,
             unnest(sqlc.arg('code_versions')::int[]) AS code_version, unnest(sqlc.arg('code_hashes')::text[]) AS code_hash,
             unnest(sqlc.arg('concurrency_keys')::text[]) AS concurrency_key,
             unnest(sqlc.arg('item_indexes')::int[]) AS item_index) AS u
WHERE s.id = sqlc.arg('spawned_by')::text;

-- name: SpawnedBy :many
-- The spawned runs among ids, with the row that spawned each.
SELECT id, spawned_by::text AS spawned_by FROM task_runs WHERE id = ANY(sqlc.arg('ids')::text[]) AND spawned_by IS NOT NULL;

-- name: SpawnedResolved :one
-- n runs spawned by row id resolved: while it waits, it counts them down. Its own output comes
-- back with the last count-down only (completeSpawnRow's).
UPDATE task_runs SET items_left = items_left - sqlc.arg('n')::int, updated_at = now()
WHERE id = sqlc.arg('id')::text AND status = 'waiting' AND items_left IS NOT NULL
RETURNING task_id, items_left::int AS items_left, (CASE WHEN items_left <= 0 THEN output END)::bytea AS output,
          CASE WHEN items_left <= 0 THEN coalesce(output_path, '') ELSE '' END::text AS output_path, selected_next;

-- name: SpawnedOutputs :many
-- The current runs spawned by row spawned_by in index order, with their outputs.
SELECT item_index::int AS item_index, status, output, coalesce(output_path, '') AS output_path
FROM task_runs
WHERE spawned_by = sqlc.arg('spawned_by')::text AND superseded_by IS NULL
ORDER BY item_index;

-- name: ReleaseSpawned :execrows
-- Releases the first n runs row spawned_by holds (InsertSpawned's bound), in index order: they
-- become ready (a held run of a paused pipeline is parked with its held time, and the trigger of
-- migration 009 parks it again with the new one).
UPDATE task_runs SET available_at = now(), updated_at = now()
WHERE id IN (SELECT id FROM task_runs
             WHERE spawned_by = sqlc.arg('spawned_by')::text AND status = 'pending' AND superseded_by IS NULL
               AND (available_at = '9999-12-31 00:00:00+00' OR parked_available_at = '9999-12-31 00:00:00+00')
             ORDER BY item_index
             LIMIT sqlc.arg('n')::int);

-- name: SpawnedActive :one
-- How many runs of row spawned_by are ready or in flight (not held, not ended).
SELECT count(*)::int FROM task_runs
WHERE spawned_by = sqlc.arg('spawned_by')::text AND superseded_by IS NULL
  AND (status IN ('dispatching', 'running')
       OR (status = 'pending' AND available_at <> '9999-12-31 00:00:00+00' AND parked_available_at IS DISTINCT FROM '9999-12-31 00:00:00+00'));

-- name: HoldSpawned :exec
-- Holds spawned run id (a DLQ retry while its node's bound is taken) until ReleaseSpawned.
UPDATE task_runs SET available_at = '9999-12-31 00:00:00+00' WHERE id = sqlc.arg('id')::text AND status = 'pending';

-- name: SpawnedByOf :one
-- The spawning row of task run id and its task ('' = none).
SELECT coalesce(tr.spawned_by, '')::text AS spawned_by, coalesce(s.task_id, '')::text AS spawner_task
FROM task_runs tr LEFT JOIN task_runs s ON s.id = tr.spawned_by
WHERE tr.id = sqlc.arg('id')::text;

-- name: MapRowItems :one
-- The item count of the open map row of node task_id of run pipeline_run_id (no row: it no
-- longer waits for items).
SELECT id, items_total::int AS items_total FROM task_runs
WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND task_id = sqlc.arg('task_id')::text
  AND item_index IS NULL AND superseded_by IS NULL AND status = 'waiting' AND items_left IS NOT NULL;

-- name: GrowMapRow :one
-- The open map row id waits for n more items (spawned by one of its items), numbered from the
-- base returned.
UPDATE task_runs SET items_total = items_total + sqlc.arg('n')::int, items_left = items_left + sqlc.arg('n')::int, updated_at = now()
WHERE id = sqlc.arg('id')::text AND status = 'waiting' AND items_left IS NOT NULL
RETURNING (items_total - sqlc.arg('n')::int)::int AS base;
