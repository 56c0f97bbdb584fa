-- name: IdempotencySourcePaths :one
-- The stored paths of run source_id when it is a completed run of run run_id's task recorded
-- under an idempotency key of that task: a callback of run_id reusing source_id's cached result
-- may name them.
SELECT coalesce(r.output_path, ''), coalesce(r.logs_path, ''), r.assets
FROM task_runs me
JOIN task_runs r ON r.id = sqlc.arg('source_id') AND r.task_id = me.task_id AND r.status = 'completed'
WHERE me.id = sqlc.arg('run_id')
  AND EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.task_id = me.task_id AND k.run_id = r.id);
