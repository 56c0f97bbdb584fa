-- Pipelines: definitions, runs, advancement.

-- name: active_tasks
SELECT id, service_id, allowed_next, code_version, code_hash, concurrency, priority,
       coalesce(input_schema_hash, '')
FROM tasks WHERE removed_in_version IS NULL;

-- name: pipeline_get
SELECT id, coalesce(service_id, ''), entry_tasks, failure_mode, implicit, description, created_at, updated_at
FROM pipelines WHERE id = $1;

-- name: pipeline_list
SELECT id, coalesce(service_id, ''), entry_tasks, failure_mode, implicit, description, created_at, updated_at
FROM pipelines ORDER BY id;

-- name: upsert_pipeline
-- $1 id, $2 service id (NULL for PUT), $3 entry tasks, $4 failure mode, $5 implicit, $6 description.
-- An implicit (per-service) definition never replaces an explicit one.
INSERT INTO pipelines AS p (id, service_id, entry_tasks, failure_mode, implicit, description)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET
    service_id = excluded.service_id, entry_tasks = excluded.entry_tasks,
    failure_mode = excluded.failure_mode, implicit = excluded.implicit,
    description = excluded.description, updated_at = now()
WHERE p.implicit OR NOT excluded.implicit;

-- name: insert_pipeline_run
-- $8 is the W3C traceparent of the trigger's span ('' = none).
INSERT INTO pipeline_runs (id, pipeline_id, status, failure_mode, priority, metadata, input_path, snapshot,
                           traceparent)
VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, nullif($8, ''));

-- name: insert_pipeline_task_runs
-- Every node of a new pipeline run at once: entry tasks pending, the others waiting. Each
-- continues the trace of the run ($4, the trigger's traceparent, '' = none).
INSERT INTO task_runs (id, task_id, pipeline_run_id, status, priority, input_path, code_version,
                       code_hash, predecessors, preds_left, selected, traceparent)
SELECT i.id, i.task_id, $1, i.status, i.priority, $2, i.code_version, i.code_hash, i.predecessors,
       i.preds_left, i.selected, nullif($4, '')
FROM jsonb_to_recordset($3::jsonb) AS i(id text, task_id text, status text, priority int,
    code_version int, code_hash text, predecessors text[], preds_left int, selected bool);

-- name: pipeline_run_of_task_run
SELECT coalesce(pipeline_run_id, '') FROM task_runs WHERE id = $1;

-- name: lock_pipeline_runs
-- Locks pipeline runs in id order (every writer locks a pipeline run before its task runs).
SELECT id, status, failure_mode, snapshot FROM pipeline_runs
WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE;

-- name: advance_successors
-- Resolves predecessors of waiting nodes of run $1 (failure mode $2): per successor $3, $4 of
-- its predecessors resolved, $5 whether one of them selected it, $6 whether one failed. A node
-- whose last predecessor resolves leaves waiting exactly once: pending when selected, skipped
-- otherwise (and, in continue mode, skipped when anything upstream failed). A node without a
-- trace context takes the pipeline run's.
UPDATE task_runs tr SET
    traceparent     = coalesce(tr.traceparent, (SELECT pr.traceparent FROM pipeline_runs pr WHERE pr.id = $1)),
    preds_left      = tr.preds_left - u.n,
    selected        = tr.selected OR u.sel,
    upstream_failed = tr.upstream_failed OR u.failed,
    status          = CASE WHEN tr.preds_left - u.n > 0 THEN 'waiting'
                           WHEN $2 = 'continue' AND (tr.upstream_failed OR u.failed) THEN 'skipped'
                           WHEN tr.selected OR u.sel THEN 'pending'
                           ELSE 'skipped' END,
    error           = CASE WHEN tr.preds_left - u.n = 0 AND $2 = 'continue' AND (tr.upstream_failed OR u.failed)
                           THEN 'skipped: an upstream task failed' END,
    available_at    = now(),
    completed_at    = CASE WHEN tr.preds_left - u.n > 0 THEN NULL
                           WHEN $2 = 'continue' AND (tr.upstream_failed OR u.failed) THEN now()
                           WHEN tr.selected OR u.sel THEN NULL
                           ELSE now() END,
    updated_at      = now()
FROM unnest($3::text[], $4::int[], $5::bool[], $6::bool[]) AS u(task_id, n, sel, failed)
WHERE tr.pipeline_run_id = $1 AND tr.task_id = u.task_id AND tr.status = 'waiting'
  AND tr.superseded_by IS NULL
RETURNING tr.task_id, tr.status, tr.upstream_failed;

-- name: pipeline_run_tally
SELECT count(*) FILTER (WHERE status NOT IN ('completed', 'failed', 'cancelled', 'skipped')),
       count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'completed'),
       coalesce(string_agg(task_id, ', ' ORDER BY task_id) FILTER (WHERE status = 'failed'), '')
FROM task_runs WHERE pipeline_run_id = $1 AND superseded_by IS NULL;

-- name: finish_pipeline_run
UPDATE pipeline_runs SET status = $2, error = nullif($3, ''), completed_at = now()
WHERE id = $1 AND status = 'running';

-- name: cancel_pipeline_nodes
-- Cancels run $1's nodes in states $2 with reason $3. Workers of running ones learn it from
-- shouldCancel; their late callbacks change nothing.
UPDATE task_runs SET status = 'cancelled', error = $3, error_code = 'CANCELLED', deadline = NULL,
                     completed_at = now(), updated_at = now()
WHERE pipeline_run_id = $1 AND superseded_by IS NULL AND status = ANY($2::text[]);

-- name: upstream_refs
-- For each run in $1, its completed predecessors' outputs: one probe of the node index per
-- predecessor, whatever the size of the table. The fences (MATERIALIZED, OFFSET 0) keep the
-- planner from starting at the other end when statistics are stale.
WITH c AS MATERIALIZED (
    SELECT id, pipeline_run_id, predecessors FROM task_runs
    WHERE id = ANY($1::text[]) AND pipeline_run_id IS NOT NULL
)
SELECT c.id, p.task_id, coalesce(p.output_path, ''), p.assets
FROM c
CROSS JOIN LATERAL unnest(c.predecessors) AS pred(task_id)
CROSS JOIN LATERAL (
    SELECT x.task_id, x.output_path, x.assets FROM task_runs x
    WHERE x.pipeline_run_id = c.pipeline_run_id AND x.task_id = pred.task_id
      AND x.superseded_by IS NULL AND x.status = 'completed'
    OFFSET 0
) p;

-- name: allowed_next_of_run
SELECT coalesce(pr.snapshot -> 'tasks' -> tr.task_id -> 'allowedNext', '[]'::jsonb)
FROM task_runs tr JOIN pipeline_runs pr ON pr.id = tr.pipeline_run_id
WHERE tr.id = $1;

-- name: pipeline_run_get
SELECT id, pipeline_id, status, failure_mode, priority, metadata, input_path, snapshot,
       coalesce(error, ''), created_at, completed_at
FROM pipeline_runs WHERE id = $1;

-- name: pipeline_run_list
-- $1 pipeline ('' = all), $2 status ('' = all), $3 cursor ('' = newest), $4 limit.
SELECT id, pipeline_id, status, failure_mode, priority, metadata, input_path, NULL::jsonb,
       coalesce(error, ''), created_at, completed_at
FROM pipeline_runs
WHERE ($1 = '' OR pipeline_id = $1) AND ($2 = '' OR status = $2) AND ($3 = '' OR id < $3)
ORDER BY id DESC
LIMIT $4;

-- name: pipeline_run_task_runs
SELECT id, task_id, coalesce(pipeline_run_id, ''), status, attempt, priority, coalesce(error, ''),
       coalesce(error_code, ''), previous_attempts, code_version, code_hash, input_path,
       coalesce(output_path, ''), output_size, assets, coalesce(logs_path, ''), selected_next,
       progress, coalesce(progress_message, ''), metadata, coalesce(idempotency_key, ''),
       created_at, updated_at, available_at, started_at, completed_at, deadline,
       coalesce(superseded_by, '')
FROM task_runs WHERE pipeline_run_id = $1
ORDER BY id;

-- name: previous_code_versions
-- Code versions of the task runs of the run of the same pipeline before $1.
SELECT tr.task_id, tr.code_version
FROM task_runs tr
WHERE tr.superseded_by IS NULL AND tr.pipeline_run_id = (
    SELECT prev.id FROM pipeline_runs prev, pipeline_runs cur
    WHERE cur.id = $1 AND prev.pipeline_id = cur.pipeline_id AND prev.id < cur.id
    ORDER BY prev.id DESC LIMIT 1);

-- name: pipeline_nodes_state
SELECT id, task_id, status, selected_next, upstream_failed
FROM task_runs WHERE pipeline_run_id = $1 AND superseded_by IS NULL;

-- name: reopen_node
-- Puts a node of a re-opened run back to waiting (or pending/skipped when nothing is left to wait for).
UPDATE task_runs SET status = $2, preds_left = $3, selected = $4, upstream_failed = $5,
                     error = NULL, error_code = NULL, completed_at = CASE WHEN $2 = 'skipped' THEN now() END,
                     available_at = now(), updated_at = now()
WHERE id = $1;

-- name: supersede_node
UPDATE task_runs SET superseded_by = $2, updated_at = now() WHERE id = $1;

-- name: insert_retry_node
INSERT INTO task_runs (id, task_id, pipeline_run_id, status, priority, input_path, code_version,
                       code_hash, metadata, predecessors, preds_left, selected, traceparent)
SELECT $2, old.task_id, old.pipeline_run_id, 'pending', old.priority, old.input_path, t.code_version,
       t.code_hash, old.metadata, old.predecessors, 0, true, old.traceparent
FROM task_runs old JOIN tasks t ON t.id = old.task_id
WHERE old.id = $1;

-- name: reopen_pipeline_run
UPDATE pipeline_runs SET status = 'running', error = NULL, completed_at = NULL WHERE id = $1;
