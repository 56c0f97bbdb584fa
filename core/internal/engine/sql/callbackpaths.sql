-- name: idempotency_source_paths
-- The stored paths of run $2 when it is a completed run of run $1's task recorded under an
-- idempotency key of that task: a callback of $1 reusing $2's cached result may name them.
SELECT coalesce(r.output_path, ''), coalesce(r.logs_path, ''), r.assets
FROM task_runs me
JOIN task_runs r ON r.id = $2 AND r.task_id = me.task_id AND r.status = 'completed'
WHERE me.id = $1
  AND EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.task_id = me.task_id AND k.run_id = r.id);
