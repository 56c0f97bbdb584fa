-- Retention: each statement deletes one bounded chunk, oldest first; now is the time (NULL =
-- the database clock).

-- name: PurgeDLQ :execrows
-- DLQ entries that failed more than older_than_ms ms ago, at most max.
DELETE FROM dlq WHERE id IN (
    SELECT id FROM dlq WHERE failed_at < coalesce(sqlc.narg('now')::timestamptz, now()) - sqlc.arg('older_than_ms')::bigint * interval '1 millisecond'
    ORDER BY failed_at LIMIT sqlc.arg('max')::int);

-- name: PurgeIdempotencyKeys :execrows
-- Expired idempotency keys, at most max.
DELETE FROM idempotency_keys WHERE (task_id, key) IN (
    SELECT task_id, key FROM idempotency_keys WHERE expires_at <= coalesce(sqlc.narg('now')::timestamptz, now())
    ORDER BY expires_at LIMIT sqlc.arg('max')::int);

-- name: PurgeRuns :execrows
-- Finished standalone runs completed more than older_than_ms ms ago, at most max.
DELETE FROM task_runs WHERE id IN (
    SELECT id FROM task_runs
    WHERE pipeline_run_id IS NULL AND status IN ('completed', 'failed', 'cancelled', 'skipped')
      AND completed_at < coalesce(sqlc.narg('now')::timestamptz, now()) - sqlc.arg('older_than_ms')::bigint * interval '1 millisecond'
    ORDER BY completed_at LIMIT sqlc.arg('max')::int);

-- name: PurgePipelineRuns :execrows
-- Finished pipeline runs (and, by cascade, their task runs) completed more than older_than_ms ms
-- ago, at most max.
DELETE FROM pipeline_runs WHERE id IN (
    SELECT id FROM pipeline_runs
    WHERE status <> 'running' AND completed_at < coalesce(sqlc.narg('now')::timestamptz, now()) - sqlc.arg('older_than_ms')::bigint * interval '1 millisecond'
    ORDER BY completed_at LIMIT sqlc.arg('max')::int);
