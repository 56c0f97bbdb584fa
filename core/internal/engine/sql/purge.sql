-- Retention: each statement deletes one bounded chunk, oldest first.

-- name: purge_dlq
-- DLQ entries that failed more than $1 ms ago, at most $2.
DELETE FROM dlq WHERE id IN (
    SELECT id FROM dlq WHERE failed_at < now() - $1::bigint * interval '1 millisecond'
    ORDER BY failed_at LIMIT $2);

-- name: purge_idempotency_keys
-- Expired idempotency keys, at most $1.
DELETE FROM idempotency_keys WHERE (task_id, key) IN (
    SELECT task_id, key FROM idempotency_keys WHERE expires_at <= now()
    ORDER BY expires_at LIMIT $1);

-- name: purge_runs
-- Finished standalone runs completed more than $1 ms ago, at most $2.
DELETE FROM task_runs WHERE id IN (
    SELECT id FROM task_runs
    WHERE pipeline_run_id IS NULL AND status IN ('completed', 'failed', 'cancelled', 'skipped')
      AND completed_at < now() - $1::bigint * interval '1 millisecond'
    ORDER BY completed_at LIMIT $2);

-- name: purge_pipeline_runs
-- Finished pipeline runs (and, by cascade, their task runs) completed more than $1 ms ago, at most $2.
DELETE FROM pipeline_runs WHERE id IN (
    SELECT id FROM pipeline_runs
    WHERE status <> 'running' AND completed_at < now() - $1::bigint * interval '1 millisecond'
    ORDER BY completed_at LIMIT $2);
