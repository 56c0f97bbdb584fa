-- Sub-pipelines (migration 015, docs/dynamic-pipelines.md): a node that runs another pipeline.
-- Every statement on a run runs under the lock of that run (lockRuns), a parent's before its
-- children's.

-- name: SubPipelineRefs :many
-- The pipelines that declare nodes, with their nodes: the declaration check reads the
-- sub-pipeline references of every pipeline from them.
SELECT id, nodes FROM pipelines WHERE nodes IS NOT NULL ORDER BY id;

-- name: ExistingPipelines :many
-- The ids among ids that name a pipeline.
SELECT id FROM pipelines WHERE id = ANY(sqlc.arg('ids')::text[]);

-- name: LockSubPipelineDeclarations :exec
-- Serialises the declarations that reference sub-pipelines (a transaction-level advisory lock),
-- so that two of them cannot make a cycle that neither sees alone.
SELECT pg_advisory_xact_lock(sqlc.arg('key')::bigint);

-- name: SubNodeUpstream :many
-- The completed predecessors of a sub-pipeline node (task_ids) in pipeline run
-- pipeline_run_id, in task id order, with their outputs: the child run's input.
SELECT task_id, coalesce(output_path, '') AS output_path, output, assets
FROM task_runs
WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND task_id = ANY(sqlc.arg('task_ids')::text[])
  AND superseded_by IS NULL AND status = 'completed' AND item_index IS NULL
ORDER BY task_id;

-- name: SetRunParent :exec
-- Links the child run id, just inserted, to its parent run and node row, with its ancestors.
UPDATE pipeline_runs SET parent_run_id = sqlc.arg('parent_run_id')::text, parent_node_run_id = sqlc.arg('parent_node_run_id')::text,
                         ancestors = sqlc.arg('ancestors')::text[]
WHERE id = sqlc.arg('id')::text;

-- name: WaitSubNode :exec
-- The sub-pipeline node row id waits for its child run: back to waiting, which no claim takes.
UPDATE task_runs SET status = 'waiting', updated_at = now() WHERE id = sqlc.arg('id')::text;

-- name: RunningChildren :many
-- The running child runs of pipeline run parent_run_id, in id order.
SELECT id FROM pipeline_runs
WHERE parent_run_id = sqlc.arg('parent_run_id')::text AND status = 'running'
ORDER BY id;

-- name: ParentNodeOf :one
-- The parent node of child run id: the node row's id and task id, and the child's pipeline.
SELECT tr.id, tr.task_id, pr.pipeline_id, coalesce(pr.error, '') AS error
FROM pipeline_runs pr JOIN task_runs tr ON tr.id = pr.parent_node_run_id
WHERE pr.id = sqlc.arg('id')::text;

-- name: TerminalOutputs :many
-- The current rows of nodes task_ids of pipeline run pipeline_run_id, with their outputs.
SELECT task_id, status, output, coalesce(output_path, '') AS output_path
FROM task_runs
WHERE pipeline_run_id = sqlc.arg('pipeline_run_id')::text AND task_id = ANY(sqlc.arg('task_ids')::text[])
  AND superseded_by IS NULL AND item_index IS NULL
ORDER BY task_id;

-- name: EndSubNode :execrows
-- Ends the waiting sub-pipeline node row id: completed with its output (inline, or stored at
-- output_path), or failed with error and error_code. A node that no longer waits (cancelled with
-- its run) is left as it is: 0 rows.
UPDATE task_runs SET status = sqlc.arg('status')::text, output = sqlc.narg('output'), output_path = sqlc.narg('output_path'),
                     output_size = sqlc.narg('output_size'), error = sqlc.narg('error'), error_code = sqlc.narg('error_code'),
                     completed_at = now(), updated_at = now()
WHERE id = sqlc.arg('id')::text AND status = 'waiting';

-- name: RunFamily :many
-- The parent (relation 'parent') and the children (relation 'child') of pipeline run id, each
-- with its node (the parent's node row for both: the node in the parent that the child stands
-- for), at most max children, in id order.
(SELECT 'parent'::text AS relation, pr.parent_run_id AS run_id, coalesce(p.pipeline_id, '') AS pipeline_id,
        coalesce(p.status, '') AS status, pr.parent_node_run_id AS node_run_id, coalesce(tr.task_id, '') AS task_id
 FROM pipeline_runs pr
 LEFT JOIN pipeline_runs p ON p.id = pr.parent_run_id
 LEFT JOIN task_runs tr ON tr.id = pr.parent_node_run_id
 WHERE pr.id = sqlc.arg('id')::text AND pr.parent_run_id IS NOT NULL)
UNION ALL
(SELECT 'child'::text, c.id, c.pipeline_id, c.status, c.parent_node_run_id, coalesce(tr.task_id, '')
 FROM pipeline_runs c
 LEFT JOIN task_runs tr ON tr.id = c.parent_node_run_id
 WHERE c.parent_run_id = sqlc.arg('id')::text
 ORDER BY c.id
 LIMIT sqlc.arg('max')::int);
