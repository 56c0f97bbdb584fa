-- Worker registration.

-- name: LockService :exec
SELECT pg_advisory_xact_lock(hashtext('pipeweave/service/' || sqlc.arg('service_id')::text));

-- name: ServiceVersion :one
SELECT version FROM services WHERE id = sqlc.arg('id');

-- name: UpsertService :exec
-- key_id is the key id of the master secret whose service key signed the registration (NULL for an
-- unauthenticated compat-mode registration): later dispatches are sealed under it.
-- dispatch_batch_max is how many dispatches its workers take in one request (0: one).
INSERT INTO services (id, version, base_url, key_id, dispatch_batch_max)
VALUES (sqlc.arg('id'), sqlc.arg('version'), sqlc.arg('base_url'), sqlc.narg('key_id'), sqlc.arg('dispatch_batch_max'))
ON CONFLICT (id) DO UPDATE SET version = excluded.version, base_url = excluded.base_url,
    key_id = excluded.key_id, dispatch_batch_max = excluded.dispatch_batch_max, updated_at = now();

-- name: TaskOwners :many
SELECT id, service_id, code_hash, code_version, (removed_in_version IS NOT NULL)::bool AS removed
FROM tasks WHERE id = ANY(sqlc.arg('ids')::text[]) OR service_id = sqlc.arg('service_id');

-- name: UpsertTasks :exec
-- One row per task of the registration, as a JSON array of objects named like the columns.
INSERT INTO tasks AS t (id, service_id, code_hash, code_version, allowed_next, timeout_seconds, retries,
                        retry_backoff, retry_delay_ms, max_retry_delay_ms, heartbeat_interval_ms,
                        concurrency, priority, idempotency_ttl_seconds, description, input_schema,
                        input_json_schema, input_schema_hash, rate_limit, rate_limit_period_ms, rate_limit_key,
                        concurrency_key, concurrency_per_key)
SELECT r.id, sqlc.arg('service_id')::text, r.code_hash, r.code_version, r.allowed_next, r.timeout_seconds, r.retries,
       r.retry_backoff, r.retry_delay_ms, r.max_retry_delay_ms, r.heartbeat_interval_ms,
       r.concurrency, r.priority, r.idempotency_ttl_seconds, r.description, r.input_schema,
       r.input_json_schema, r.input_schema_hash, r.rate_limit, r.rate_limit_period_ms, r.rate_limit_key,
       r.concurrency_key, r.concurrency_per_key
FROM jsonb_to_recordset(sqlc.arg('tasks')::jsonb) AS r(id text, code_hash text, code_version int, allowed_next text[],
    timeout_seconds int, retries int, retry_backoff text, retry_delay_ms bigint,
    max_retry_delay_ms bigint, heartbeat_interval_ms bigint, concurrency int, priority int,
    idempotency_ttl_seconds int, description text, input_schema jsonb, input_json_schema jsonb,
    input_schema_hash text, rate_limit int, rate_limit_period_ms bigint, rate_limit_key text,
    concurrency_key text, concurrency_per_key int)
ON CONFLICT (id) DO UPDATE SET
    code_hash = excluded.code_hash, code_version = excluded.code_version,
    allowed_next = excluded.allowed_next, timeout_seconds = excluded.timeout_seconds,
    retries = excluded.retries, retry_backoff = excluded.retry_backoff,
    retry_delay_ms = excluded.retry_delay_ms, max_retry_delay_ms = excluded.max_retry_delay_ms,
    heartbeat_interval_ms = excluded.heartbeat_interval_ms, concurrency = excluded.concurrency,
    priority = excluded.priority, idempotency_ttl_seconds = excluded.idempotency_ttl_seconds,
    description = excluded.description, input_schema = excluded.input_schema,
    input_json_schema = excluded.input_json_schema, input_schema_hash = excluded.input_schema_hash,
    rate_limit = excluded.rate_limit, rate_limit_period_ms = excluded.rate_limit_period_ms,
    rate_limit_key = excluded.rate_limit_key, concurrency_key = excluded.concurrency_key,
    concurrency_per_key = excluded.concurrency_per_key,
    removed_in_version = NULL, updated_at = now();

-- name: InsertHistory :exec
INSERT INTO task_code_history (task_id, code_version, code_hash, service_version)
SELECT unnest(sqlc.arg('task_ids')::text[]), unnest(sqlc.arg('code_versions')::int[]),
       unnest(sqlc.arg('code_hashes')::text[]), unnest(sqlc.arg('service_versions')::text[])
ON CONFLICT (task_id, code_version) DO NOTHING;

-- name: OrphanTasks :exec
-- Marks tasks ids as removed in version and cancels their runs that have not started.
WITH removed AS (
    UPDATE tasks SET removed_in_version = sqlc.arg('version')::text, updated_at = now()
    WHERE id = ANY(sqlc.arg('ids')::text[])
    RETURNING id
)
UPDATE task_runs SET
    status       = 'cancelled',
    error        = 'Task type removed in version ' || sqlc.arg('version')::text,
    error_code   = 'TASK_REMOVED',
    completed_at = now(),
    updated_at   = now()
-- One arm per status, so that each is an index scan (task_runs_pending, task_runs_waiting); the
-- ids are those of removed, whose UPDATE runs whether or not this statement reads it.
WHERE (status = 'pending' AND task_id = ANY(sqlc.arg('ids')::text[]))
   OR (status = 'waiting' AND task_id = ANY(sqlc.arg('ids')::text[]));

-- name: SetTaskPaused :one
-- Pauses task id (paused true: paused_at is set, kept if it already was) or resumes it (cleared).
-- Callers hold the claim lock, so that no claim that started before this commits takes the
-- task's runs after it.
UPDATE tasks SET paused_at = CASE WHEN sqlc.arg('paused')::bool THEN coalesce(paused_at, now()) END
WHERE id = sqlc.arg('id') AND removed_in_version IS NULL -- a removed task is not registered
RETURNING id, paused_at;
