-- Pipelines: definitions, runs, advancement.

-- name: ActiveTasks :many
SELECT id, service_id, allowed_next, code_version, code_hash, concurrency, priority,
       coalesce(input_schema_hash, ''), coalesce(concurrency_key, '') AS concurrency_key
FROM tasks WHERE removed_in_version IS NULL;

-- name: PipelineGet :one
SELECT id, coalesce(service_id, ''), entry_tasks, failure_mode, implicit, description, created_at, updated_at, paused_at,
       timeout_ms, nodes
FROM pipelines WHERE id = sqlc.arg('id');

-- name: PipelineList :many
SELECT id, coalesce(service_id, ''), entry_tasks, failure_mode, implicit, description, created_at, updated_at, paused_at,
       timeout_ms, nodes
FROM pipelines ORDER BY id;

-- name: UpsertPipeline :exec
-- service_id is NULL for PUT; timeout_ms is the runs' timeout (NULL = none); nodes is the node
-- configuration (NULL: none).
-- An implicit (per-service) definition never replaces an explicit one.
INSERT INTO pipelines AS p (id, service_id, entry_tasks, failure_mode, implicit, description, timeout_ms, nodes)
VALUES (sqlc.arg('id'), sqlc.narg('service_id'), sqlc.arg('entry_tasks'), sqlc.arg('failure_mode'), sqlc.arg('implicit'), sqlc.arg('description'),
        sqlc.narg('timeout_ms'), sqlc.narg('nodes')::jsonb)
ON CONFLICT (id) DO UPDATE SET
    service_id = excluded.service_id, entry_tasks = excluded.entry_tasks,
    failure_mode = excluded.failure_mode, implicit = excluded.implicit,
    description = excluded.description, timeout_ms = excluded.timeout_ms, nodes = excluded.nodes, updated_at = now()
WHERE p.implicit OR NOT excluded.implicit;

-- name: InsertPipelineRun :exec
-- traceparent is the W3C traceparent of the trigger's span ('' = none); input the input the run
-- keeps inline (NULL = stored at input_path); timeout_ms the run's timeout (NULL = none), which
-- sets its deadline from now (NULL = the database clock).
INSERT INTO pipeline_runs (id, pipeline_id, status, failure_mode, priority, metadata, input_path, input, snapshot,
                           traceparent, timeout_ms, deadline)
VALUES (sqlc.arg('id'), sqlc.arg('pipeline_id'), 'running', sqlc.arg('failure_mode'), sqlc.arg('priority'), sqlc.arg('metadata'), sqlc.arg('input_path'), sqlc.narg('input'), sqlc.arg('snapshot'), nullif(sqlc.arg('traceparent')::text, ''),
        sqlc.narg('timeout_ms')::bigint,
        coalesce(sqlc.narg('now')::timestamptz, now()) + sqlc.narg('timeout_ms')::bigint * interval '1 millisecond');

-- name: InsertPipelineTaskRuns :exec
-- Every node of a new pipeline run at once: entry tasks pending, the others waiting. Each
-- continues the trace of the run (traceparent, the trigger's traceparent, '' = none). A node of a
-- task with a concurrency key carries the key's value in the run's input (absent: none).
INSERT INTO task_runs (id, task_id, pipeline_run_id, status, priority, input_path, code_version,
                       code_hash, predecessors, preds_left, selected, traceparent, concurrency_key)
SELECT i.id, i.task_id, sqlc.arg('pipeline_run_id')::text, i.status, i.priority, sqlc.arg('input_path')::text, i.code_version, i.code_hash, i.predecessors,
       i.preds_left, i.selected, nullif(sqlc.arg('traceparent')::text, ''), i.concurrency_key
FROM jsonb_to_recordset(sqlc.arg('nodes')::jsonb) AS i(id text, task_id text, status text, priority int,
    code_version int, code_hash text, predecessors text[], preds_left int, selected bool, concurrency_key text);

-- name: PipelineRunsOfTaskRuns :many
-- The pipeline run of each task run named that exists ('' = standalone).
SELECT id, coalesce(pipeline_run_id, '') AS pipeline_run_id FROM task_runs WHERE id = ANY(sqlc.arg('ids')::text[]);

-- name: LockPipelineRuns :many
-- Locks pipeline runs (every writer locks a pipeline run before its task runs) with their
-- ancestors (sub-pipelines, migration 015: a child's end resolves its parent's node), in id
-- order: a child's id is always greater than its parent's (startChild), so a parent is locked
-- before its children.
SELECT id, status, failure_mode, snapshot, coalesce(parent_run_id, '') AS parent_run_id,
       coalesce(cardinality(ancestors), 0)::int AS depth
FROM pipeline_runs
WHERE id = ANY(sqlc.arg('ids')::text[] || ARRAY(SELECT unnest(a.ancestors) FROM pipeline_runs a
                                                 WHERE a.id = ANY(sqlc.arg('ids')::text[]) AND a.ancestors IS NOT NULL))
ORDER BY id FOR UPDATE;

-- name: AdvanceSuccessors :many
-- Resolves predecessors of waiting nodes of run pipeline_run_id (failure mode failure_mode): per
-- successor task_ids[i], resolved[i] of its predecessors resolved, selected[i] whether one of them
-- selected it, failed[i] whether one failed. A node
-- whose last predecessor resolves leaves waiting exactly once: pending when selected, skipped
-- otherwise (and, in continue mode, skipped when anything upstream failed). A node without a
-- trace context takes the pipeline run's.
UPDATE task_runs tr SET
    traceparent     = coalesce(tr.traceparent, (SELECT pr.traceparent FROM pipeline_runs pr WHERE pr.id = sqlc.arg('pipeline_run_id')::text)),
    preds_left      = tr.preds_left - u.n,
    selected        = tr.selected OR u.sel,
    upstream_failed = tr.upstream_failed OR u.failed,
    status          = CASE WHEN tr.preds_left - u.n > 0 THEN 'waiting'
                           WHEN sqlc.arg('failure_mode')::text = 'continue' AND (tr.upstream_failed OR u.failed) THEN 'skipped'
                           WHEN tr.selected OR u.sel THEN 'pending'
                           ELSE 'skipped' END,
    error           = CASE WHEN tr.preds_left - u.n = 0 AND sqlc.arg('failure_mode')::text = 'continue' AND (tr.upstream_failed OR u.failed)
                           THEN 'skipped: an upstream task failed' END,
    available_at    = now(),
    completed_at    = CASE WHEN tr.preds_left - u.n > 0 THEN NULL
                           WHEN sqlc.arg('failure_mode')::text = 'continue' AND (tr.upstream_failed OR u.failed) THEN now()
                           WHEN tr.selected OR u.sel THEN NULL
                           ELSE now() END,
    updated_at      = now()
FROM (SELECT unnest(sqlc.arg('task_ids')::text[]) AS task_id,
             unnest(sqlc.arg('resolved')::int[]) AS n,
             unnest(sqlc.arg('selected')::bool[]) AS sel,
             unnest(sqlc.arg('failed')::bool[]) AS failed) AS u
WHERE tr.pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND tr.task_id = u.task_id AND tr.status = 'waiting'
  AND tr.superseded_by IS NULL
RETURNING tr.task_id, tr.status, tr.upstream_failed;

-- name: FinishPipelineRunIfDone :one
-- Counts the current nodes of running pipeline run id and ends the run when none is open, or
-- in fail-fast mode as soon as one failed: failed when a node failed (partial in partial-merge
-- mode when another completed, the error naming the failed nodes), else completed. A map row
-- (or spawning row) that completed with failed items (MAP_ITEMS_FAILED, SPAWN_ITEMS_FAILED;
-- continue and partial-merge) counts as both
-- a completed node and a failed one. finished is
-- the status it ended with, '' when it goes on. The caller holds the run's lock.
WITH tally AS (
    SELECT count(*) FILTER (WHERE status NOT IN ('completed', 'failed', 'cancelled', 'skipped')) AS open,
           count(*) FILTER (WHERE status = 'failed' OR (items_total IS NOT NULL AND error_code IN ('MAP_ITEMS_FAILED', 'SPAWN_ITEMS_FAILED'))) AS failed,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           coalesce(string_agg(task_id, ', ' ORDER BY task_id)
               FILTER (WHERE status = 'failed' OR (items_total IS NOT NULL AND error_code IN ('MAP_ITEMS_FAILED', 'SPAWN_ITEMS_FAILED'))), '')::text AS failed_tasks
    -- A map node's items are not counted: its map row stands for them (migration 014).
    FROM task_runs WHERE pipeline_run_id = sqlc.arg('id')::text AND superseded_by IS NULL AND item_index IS NULL
),
finished AS (
    UPDATE pipeline_runs pr SET
        status       = CASE WHEN t.failed = 0 THEN 'completed'
                            WHEN pr.failure_mode = 'partial-merge' AND t.completed > 0 THEN 'partial'
                            ELSE 'failed' END,
        error        = CASE WHEN t.failed > 0 THEN 'task ' || t.failed_tasks || ' failed' END,
        completed_at = now()
    FROM tally t
    WHERE pr.id = sqlc.arg('id')::text AND pr.status = 'running'
      AND (t.open = 0 OR (pr.failure_mode = 'fail-fast' AND t.failed > 0))
    RETURNING pr.status
)
SELECT coalesce((SELECT status FROM finished), '')::text AS finished;

-- name: FinishPipelineRun :exec
-- Ends running pipeline run id with status, error and error_code ('' = none). The caller holds
-- the run's lock.
UPDATE pipeline_runs SET status = sqlc.arg('status'), error = nullif(sqlc.arg('error')::text, ''),
                         error_code = nullif(sqlc.arg('error_code')::text, ''), completed_at = now()
WHERE id = sqlc.arg('id') AND status = 'running';

-- name: ExpiredPipelineRuns :many
-- Up to max running pipeline runs whose deadline passed at now (NULL = the database clock),
-- earliest deadline first, with their pipeline and timeout. Nothing is locked here: the sweep
-- locks them (LockPipelineRuns) and re-checks that they are still running.
SELECT id, pipeline_id, coalesce(timeout_ms, 0)::bigint AS timeout_ms FROM pipeline_runs
WHERE status = 'running' AND deadline IS NOT NULL AND deadline <= coalesce(sqlc.narg('now')::timestamptz, now())
ORDER BY deadline
LIMIT sqlc.arg('max')::int;

-- name: CancelPipelineNodes :exec
-- Cancels run pipeline_run_id's nodes in states statuses with reason. Workers of running ones learn it from
-- shouldCancel; their late callbacks change nothing.
UPDATE task_runs SET status = 'cancelled', error = sqlc.arg('reason')::text, error_code = 'CANCELLED', deadline = NULL,
                     completed_at = now(), updated_at = now()
WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND superseded_by IS NULL AND status = ANY(sqlc.arg('statuses')::text[]);

-- name: AllowedNextOfRun :one
SELECT coalesce(pr.snapshot -> 'tasks' -> tr.task_id -> 'allowedNext', '[]'::jsonb)::jsonb AS allowed_next
FROM task_runs tr JOIN pipeline_runs pr ON pr.id = tr.pipeline_run_id
WHERE tr.id = sqlc.arg('id');

-- name: PipelineRunGet :one
SELECT id, pipeline_id, status, failure_mode, priority, metadata, input_path, snapshot,
       coalesce(error, ''), created_at, completed_at, coalesce(schedule_id, '') AS schedule_id, schedule_slot,
       timeout_ms, deadline, coalesce(error_code, '') AS error_code
FROM pipeline_runs WHERE id = sqlc.arg('id');

-- name: PipelineRunList :many
-- Filters pipeline_id and status ('' = all); cursor is an id ('' = newest), max the limit.
SELECT id, pipeline_id, status, failure_mode, priority, metadata, input_path, NULL::jsonb AS snapshot,
       coalesce(error, ''), created_at, completed_at, coalesce(schedule_id, '') AS schedule_id, schedule_slot,
       timeout_ms, deadline, coalesce(error_code, '') AS error_code
FROM pipeline_runs
WHERE (sqlc.arg('pipeline_id')::text = '' OR pipeline_id = sqlc.arg('pipeline_id')::text) AND (sqlc.arg('status')::text = '' OR status = sqlc.arg('status')::text) AND (sqlc.arg('cursor')::text = '' OR id < sqlc.arg('cursor')::text)
ORDER BY id DESC
LIMIT sqlc.arg('max')::int;

-- name: PipelineRunTaskRuns :many
-- The task runs of a pipeline run: all of them, or (items false) all but the items of map nodes
-- (GET /api/runs/{id}?items=false).
SELECT id, task_id, coalesce(pipeline_run_id, ''), status, attempt, priority, coalesce(error, ''),
       coalesce(error_code, ''), previous_attempts, code_version, code_hash, input_path,
       coalesce(output_path, ''), output_size, assets, coalesce(logs_path, ''), selected_next,
       progress, coalesce(progress_message, ''), metadata, coalesce(idempotency_key, ''),
       created_at, updated_at, coalesce(parked_available_at, available_at) AS available_at, started_at, completed_at, deadline,
       coalesce(superseded_by, ''), coalesce(schedule_id, '') AS schedule_id, schedule_slot,
       item_index, items_total, items_left, coalesce(spawned_by, '') AS spawned_by
FROM task_runs WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND (sqlc.arg('items')::bool OR item_index IS NULL)
ORDER BY id;

-- name: PreviousCodeVersions :many
-- Code versions of the task runs of the run of the same pipeline before pipeline_run_id.
SELECT tr.task_id, tr.code_version
FROM task_runs tr
WHERE tr.superseded_by IS NULL AND tr.pipeline_run_id = (
    SELECT prev.id FROM pipeline_runs prev, pipeline_runs cur
    WHERE cur.id = sqlc.arg('pipeline_run_id')::text AND prev.pipeline_id = cur.pipeline_id AND prev.id < cur.id
    ORDER BY prev.id DESC LIMIT 1);

-- name: PipelineNodesState :many
-- The current node rows of a pipeline run (a map node's map row, not its items; fanned_out
-- says whether a map row has made its items).
SELECT id, task_id, status, selected_next, upstream_failed, (items_total IS NOT NULL)::bool AS fanned_out
FROM task_runs WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND superseded_by IS NULL AND item_index IS NULL;

-- name: ReopenNode :exec
-- Puts a node of a re-opened run back to waiting (or pending/skipped when nothing is left to wait for).
UPDATE task_runs SET status = sqlc.arg('status')::text, preds_left = sqlc.arg('preds_left'), selected = sqlc.arg('selected'), upstream_failed = sqlc.arg('upstream_failed'),
                     error = NULL, error_code = NULL, completed_at = CASE WHEN sqlc.arg('status')::text = 'skipped' THEN now() END,
                     available_at = now(), updated_at = now()
WHERE id = sqlc.arg('id');

-- name: SupersedeNode :execrows
UPDATE task_runs SET superseded_by = sqlc.arg('superseded_by')::text, updated_at = now() WHERE id = sqlc.arg('id');

-- name: InsertRetryNode :exec
INSERT INTO task_runs (id, task_id, pipeline_run_id, status, priority, input_path, code_version,
                       code_hash, metadata, predecessors, preds_left, selected, traceparent, concurrency_key)
SELECT sqlc.arg('id')::text, old.task_id, old.pipeline_run_id, 'pending', old.priority, old.input_path, t.code_version,
       t.code_hash, old.metadata, old.predecessors, 0, true, old.traceparent, old.concurrency_key
FROM task_runs old JOIN tasks t ON t.id = old.task_id
WHERE old.id = sqlc.arg('old_id')::text;

-- name: ReopenPipelineRun :exec
UPDATE pipeline_runs SET status = 'running', error = NULL, error_code = NULL, completed_at = NULL WHERE id = sqlc.arg('id');

-- name: PipelineRunEnd :one
-- Why pipeline run id ended, when it says ('' otherwise), and whether its deadline has passed
-- at now (NULL = the database clock): a DLQ retry refuses to re-open a run that timed out
-- (PIPELINE_TIMEOUT) or whose deadline passed since it ended.
SELECT coalesce(error_code, '')::text AS error_code,
       coalesce(deadline <= coalesce(sqlc.narg('now')::timestamptz, now()), false)::bool AS deadline_passed
FROM pipeline_runs WHERE id = sqlc.arg('id');

-- name: SetPipelinePaused :one
-- Pauses pipeline id (paused true: paused_at is set, kept if it already was) or resumes it
-- (cleared). Callers hold the claim lock, and then park or unpark the nodes of its runs.
UPDATE pipelines SET paused_at = CASE WHEN sqlc.arg('paused')::bool THEN coalesce(paused_at, now()) END
WHERE id = sqlc.arg('id')
RETURNING id, paused_at;

-- name: LockRunningPipelineRuns :exec
-- Locks pipeline id's running runs, in id order, as every writer of their nodes does first.
SELECT id FROM pipeline_runs WHERE pipeline_id = sqlc.arg('id') AND status = 'running' ORDER BY id FOR UPDATE;

-- name: ParkPipelineNodes :exec
-- Parks the pending nodes of pipeline id's running runs (locked before, LockRunningPipelineRuns),
-- which the pause just made paused: the update fires task_runs_park_paused (migration 009), which
-- parks each one.
UPDATE task_runs SET available_at = available_at
WHERE status = 'pending' AND parked_available_at IS NULL
  AND pipeline_run_id IN (SELECT pr.id FROM pipeline_runs pr WHERE pr.pipeline_id = sqlc.arg('id') AND pr.status = 'running');

-- name: UnparkPipelineNodes :exec
-- Puts the parked nodes of pipeline id's runs back at their times, once the pipeline is resumed
-- (in the same transaction, after it). A transaction that parks a node takes a share lock on the
-- paused pipeline's row, so none parks one the resume does not see.
UPDATE task_runs SET available_at = parked_available_at, parked_available_at = NULL
WHERE parked_available_at IS NOT NULL
  AND pipeline_run_id IN (SELECT pr.id FROM pipeline_runs pr WHERE pr.pipeline_id = sqlc.arg('id'));
