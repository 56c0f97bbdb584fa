-- Enqueueing standalone runs.

-- name: TasksForEnqueue :many
-- The active tasks among ids, with what an enqueue needs.
SELECT id, priority, idempotency_ttl_seconds, code_version, code_hash, coalesce(input_schema_hash, ''),
       coalesce(concurrency_key, '') AS concurrency_key
FROM tasks
WHERE id = ANY(sqlc.arg('ids')::text[]) AND removed_in_version IS NULL;

-- name: ClaimIdempotencyKeys :many
-- Takes each (task, key) for the new run unless a live entry holds it. An expired entry is taken
-- over. Concurrent enqueues with one key serialise on the primary key: the loser sees the
-- winner's committed row and is not returned here.
INSERT INTO idempotency_keys AS k (task_id, key, run_id, expires_at)
SELECT i.task_id, i.key, i.run_id, now() + i.ttl_seconds * interval '1 second'
FROM (SELECT unnest(sqlc.arg('task_ids')::text[]) AS task_id,
             unnest(sqlc.arg('keys')::text[]) AS key,
             unnest(sqlc.arg('run_ids')::text[]) AS run_id,
             unnest(sqlc.arg('ttl_seconds')::int[]) AS ttl_seconds) AS i
ON CONFLICT (task_id, key) DO UPDATE
    SET run_id = excluded.run_id, expires_at = excluded.expires_at, created_at = now()
    WHERE k.expires_at <= now()
RETURNING k.task_id, k.key, k.run_id;

-- name: ExistingIdempotentRuns :many
-- The runs holding the keys (task_ids[i], keys[i]).
SELECT k.task_id, k.key, tr.id, tr.status, tr.input_path
FROM (SELECT unnest(sqlc.arg('task_ids')::text[]) AS task_id,
             unnest(sqlc.arg('keys')::text[]) AS key) AS i
JOIN idempotency_keys k ON k.task_id = i.task_id AND k.key = i.key
JOIN task_runs tr ON tr.id = k.run_id;

-- name: InsertRuns :exec
-- One multi-row insert of new pending runs; traceparents is the W3C traceparent of the trace each
-- continues ('' = none), inputs the input each keeps inline (NULL = stored at its input path),
-- concurrency_keys the value of its task's concurrency key ('-': the task has none, NULL).
INSERT INTO task_runs (id, task_id, status, priority, available_at, input_path, input, code_version,
                       code_hash, metadata, idempotency_key, traceparent, concurrency_key)
SELECT i.id, i.task_id, 'pending', i.priority, now() + i.delay_ms * interval '1 millisecond',
       i.input_path, i.input, i.code_version, i.code_hash, i.metadata, i.key, nullif(i.traceparent, ''), nullif(i.ckey, '-')
FROM (SELECT unnest(sqlc.arg('ids')::text[]) AS id,
             unnest(sqlc.arg('task_ids')::text[]) AS task_id,
             unnest(sqlc.arg('priorities')::int[]) AS priority,
             unnest(sqlc.arg('delays_ms')::bigint[]) AS delay_ms,
             unnest(sqlc.arg('input_paths')::text[]) AS input_path,
             unnest(sqlc.arg('inputs')::bytea[]) AS input,
             unnest(sqlc.arg('code_versions')::int[]) AS code_version,
             unnest(sqlc.arg('code_hashes')::text[]) AS code_hash,
             unnest(sqlc.arg('metadata')::jsonb[]) AS metadata,
             unnest(sqlc.arg('keys')::text[]) AS key,
             unnest(sqlc.arg('traceparents')::text[]) AS traceparent,
             unnest(sqlc.arg('concurrency_keys')::text[]) AS ckey) AS i;

-- name: NotifyReady :exec
SELECT pg_notify('pipeweave_ready', '');

-- name: NotifyReadyUnlessClaimed :exec
-- NotifyReady after a TryLockClaimsGenericPlan and claim of the same transaction, only when the
-- claim did not run (its lock was taken): a transaction whose own claim took the work it made
-- ready wakes no loop to find nothing (its caller has its own loop claim whatever the claim
-- may have left).
SELECT pg_notify('pipeweave_ready', '') WHERE current_setting('pipeweave.claim_locked', true) IS DISTINCT FROM 'true';

-- name: NotifySchedules :exec
-- Tells every instance's loop that a schedule changed (its next slot may be sooner).
SELECT pg_notify('pipeweave_ready', 'schedules');

-- name: IdempotencyLookup :one
-- The completed run recorded under key for the task of run run_id, within the key's TTL.
SELECT r.id, coalesce(r.output_path, ''), coalesce(r.output_size, 0), r.assets, r.selected_next
FROM task_runs me
JOIN idempotency_keys k ON k.task_id = me.task_id AND k.key = sqlc.arg('key') AND k.expires_at > now()
JOIN task_runs r ON r.id = k.run_id AND r.status = 'completed'
WHERE me.id = sqlc.arg('run_id');

-- name: IdempotencyRecord :exec
-- Records run run_id's result under key for its task's idempotencyTTL, unless a live key already
-- names a completed run.
INSERT INTO idempotency_keys AS k (task_id, key, run_id, expires_at)
SELECT tr.task_id, sqlc.arg('key')::text, tr.id, now() + t.idempotency_ttl_seconds * interval '1 second'
FROM task_runs tr JOIN tasks t ON t.id = tr.task_id
WHERE tr.id = sqlc.arg('run_id')
ON CONFLICT (task_id, key) DO UPDATE
    SET run_id = excluded.run_id, expires_at = excluded.expires_at, created_at = now()
    WHERE k.expires_at <= now()
       OR NOT EXISTS (SELECT 1 FROM task_runs x WHERE x.id = k.run_id AND x.status = 'completed');
