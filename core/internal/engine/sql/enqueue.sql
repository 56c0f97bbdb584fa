-- Enqueueing standalone runs.

-- name: tasks_for_enqueue
-- The active tasks among $1, with what an enqueue needs.
SELECT id, priority, idempotency_ttl_seconds, code_version, code_hash, coalesce(input_schema_hash, '')
FROM tasks
WHERE id = ANY($1::text[]) AND removed_in_version IS NULL;

-- name: claim_idempotency_keys
-- Takes each (task, key) for the new run unless a live entry holds it. An expired entry is taken
-- over. Concurrent enqueues with one key serialise on the primary key: the loser sees the
-- winner's committed row and is not returned here.
INSERT INTO idempotency_keys AS k (task_id, key, run_id, expires_at)
SELECT i.task_id, i.key, i.run_id, now() + i.ttl_seconds * interval '1 second'
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[]) AS i(task_id, key, run_id, ttl_seconds)
ON CONFLICT (task_id, key) DO UPDATE
    SET run_id = excluded.run_id, expires_at = excluded.expires_at, created_at = now()
    WHERE k.expires_at <= now()
RETURNING k.task_id, k.key, k.run_id;

-- name: existing_idempotent_runs
-- The runs holding ($1 task ids, $2 keys).
SELECT k.task_id, k.key, tr.id, tr.status, tr.input_path
FROM unnest($1::text[], $2::text[]) AS i(task_id, key)
JOIN idempotency_keys k ON k.task_id = i.task_id AND k.key = i.key
JOIN task_runs tr ON tr.id = k.run_id;

-- name: insert_runs
-- One multi-row insert of new pending runs; $10 is the W3C traceparent of the trace each
-- continues ('' = none).
INSERT INTO task_runs (id, task_id, status, priority, available_at, input_path, code_version,
                       code_hash, metadata, idempotency_key, traceparent)
SELECT i.id, i.task_id, 'pending', i.priority, now() + i.delay_ms * interval '1 millisecond',
       i.input_path, i.code_version, i.code_hash, i.metadata, i.key, nullif(i.traceparent, '')
FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::text[], $6::int[], $7::text[],
            $8::jsonb[], $9::text[], $10::text[])
    AS i(id, task_id, priority, delay_ms, input_path, code_version, code_hash, metadata, key, traceparent);

-- name: notify_ready
SELECT pg_notify('pipeweave_ready', '');

-- name: idempotency_lookup
-- The completed run recorded under key $2 for the task of run $1, within the key's TTL.
SELECT r.id, coalesce(r.output_path, ''), coalesce(r.output_size, 0), r.assets, r.selected_next
FROM task_runs me
JOIN idempotency_keys k ON k.task_id = me.task_id AND k.key = $2 AND k.expires_at > now()
JOIN task_runs r ON r.id = k.run_id AND r.status = 'completed'
WHERE me.id = $1;

-- name: idempotency_record
-- Records run $1's result under key $2 for its task's idempotencyTTL, unless a live key already
-- names a completed run.
INSERT INTO idempotency_keys AS k (task_id, key, run_id, expires_at)
SELECT tr.task_id, $2, tr.id, now() + t.idempotency_ttl_seconds * interval '1 second'
FROM task_runs tr JOIN tasks t ON t.id = tr.task_id
WHERE tr.id = $1
ON CONFLICT (task_id, key) DO UPDATE
    SET run_id = excluded.run_id, expires_at = excluded.expires_at, created_at = now()
    WHERE k.expires_at <= now()
       OR NOT EXISTS (SELECT 1 FROM task_runs x WHERE x.id = k.run_id AND x.status = 'completed');
