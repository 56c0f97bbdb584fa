-- Worker registration.

-- name: lock_service
SELECT pg_advisory_xact_lock(hashtext('pipeweave/service/' || $1));

-- name: service_version
SELECT version FROM services WHERE id = $1;

-- name: upsert_service
-- $4 is the key id of the master secret whose service key signed the registration (NULL for an
-- unauthenticated compat-mode registration): later dispatches are sealed under it.
INSERT INTO services (id, version, base_url, key_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET version = excluded.version, base_url = excluded.base_url,
    key_id = excluded.key_id, updated_at = now();

-- name: task_owners
SELECT id, service_id, code_hash, code_version, removed_in_version IS NOT NULL
FROM tasks WHERE id = ANY($1::text[]) OR service_id = $2;

-- name: upsert_tasks
-- One row per task of the registration, as a JSON array of objects named like the columns.
INSERT INTO tasks AS t (id, service_id, code_hash, code_version, allowed_next, timeout_seconds, retries,
                        retry_backoff, retry_delay_ms, max_retry_delay_ms, heartbeat_interval_ms,
                        concurrency, priority, idempotency_ttl_seconds, description, input_schema,
                        input_json_schema, input_schema_hash)
SELECT r.id, $2, r.code_hash, r.code_version, r.allowed_next, r.timeout_seconds, r.retries,
       r.retry_backoff, r.retry_delay_ms, r.max_retry_delay_ms, r.heartbeat_interval_ms,
       r.concurrency, r.priority, r.idempotency_ttl_seconds, r.description, r.input_schema,
       r.input_json_schema, r.input_schema_hash
FROM jsonb_to_recordset($1::jsonb) AS r(id text, code_hash text, code_version int, allowed_next text[],
    timeout_seconds int, retries int, retry_backoff text, retry_delay_ms bigint,
    max_retry_delay_ms bigint, heartbeat_interval_ms bigint, concurrency int, priority int,
    idempotency_ttl_seconds int, description text, input_schema jsonb, input_json_schema jsonb,
    input_schema_hash text)
ON CONFLICT (id) DO UPDATE SET
    code_hash = excluded.code_hash, code_version = excluded.code_version,
    allowed_next = excluded.allowed_next, timeout_seconds = excluded.timeout_seconds,
    retries = excluded.retries, retry_backoff = excluded.retry_backoff,
    retry_delay_ms = excluded.retry_delay_ms, max_retry_delay_ms = excluded.max_retry_delay_ms,
    heartbeat_interval_ms = excluded.heartbeat_interval_ms, concurrency = excluded.concurrency,
    priority = excluded.priority, idempotency_ttl_seconds = excluded.idempotency_ttl_seconds,
    description = excluded.description, input_schema = excluded.input_schema,
    input_json_schema = excluded.input_json_schema, input_schema_hash = excluded.input_schema_hash,
    removed_in_version = NULL, updated_at = now();

-- name: insert_history
INSERT INTO task_code_history (task_id, code_version, code_hash, service_version)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[])
ON CONFLICT (task_id, code_version) DO NOTHING;

-- name: orphan_tasks
-- Marks tasks $1 as removed in version $2 and cancels their runs that have not started.
WITH removed AS (
    UPDATE tasks SET removed_in_version = $2, updated_at = now()
    WHERE id = ANY($1::text[])
    RETURNING id
)
UPDATE task_runs SET
    status       = 'cancelled',
    error        = 'Task type removed in version ' || $2,
    error_code   = 'TASK_REMOVED',
    completed_at = now(),
    updated_at   = now()
WHERE task_id IN (SELECT id FROM removed) AND status IN ('pending', 'waiting');
