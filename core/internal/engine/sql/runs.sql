-- Task run life cycle: claim, dispatch results, worker calls, failures, sweep.

-- name: claim
-- Claims up to $1 ready runs, honouring MAX_CONCURRENCY ($2, 0 = none) across every instance and
-- each task's own concurrency. Callers run it right after pg_advisory_xact_lock(claim lock) in
-- the same transaction, so the in-flight counts below include every earlier claim.
-- $3 is the dispatch lease in milliseconds. Outside maintenance mode 'running' it claims
-- nothing: the mode is read here, after the lock, which mode changes take too.
WITH inflight AS (
    SELECT task_id, count(*)::int AS n
    FROM task_runs
    WHERE status IN ('dispatching', 'running')
    GROUP BY task_id
),
room AS (
    SELECT CASE WHEN coalesce((SELECT mode FROM orchestrator_state WHERE id = 'singleton'), 'running') <> 'running' THEN 0
                WHEN $2::int = 0 THEN $1::int
                ELSE least($1::int, $2::int - (SELECT coalesce(sum(n), 0)::int FROM inflight)) END AS n
),
capacity AS (
    SELECT t.id AS task_id,
           CASE WHEN t.concurrency = 0 THEN (SELECT n FROM room)
                ELSE least((SELECT n FROM room), t.concurrency - coalesce(i.n, 0)) END AS free
    FROM tasks t
    LEFT JOIN inflight i ON i.task_id = t.id
    WHERE t.removed_in_version IS NULL
),
candidates AS (
    SELECT r.id, r.priority, r.available_at
    FROM capacity c
    CROSS JOIN LATERAL (
        SELECT tr.id, tr.priority, tr.available_at
        FROM task_runs tr
        WHERE tr.task_id = c.task_id AND tr.status = 'pending' AND tr.available_at <= now()
        ORDER BY tr.priority, tr.available_at, tr.id
        LIMIT greatest(c.free, 0)
        FOR UPDATE SKIP LOCKED
    ) r
    WHERE c.free > 0
),
chosen AS (
    SELECT id FROM candidates
    ORDER BY priority, available_at, id
    LIMIT greatest((SELECT n FROM room), 0)
)
UPDATE task_runs tr SET
    status                = 'dispatching',
    lease                 = tr.lease + 1,
    deadline              = now() + $3::bigint * interval '1 millisecond',
    timeout_at            = now() + t.timeout_seconds * interval '1 second',
    heartbeat_interval_ms = t.heartbeat_interval_ms,
    code_version          = t.code_version,
    code_hash             = t.code_hash,
    started_at            = coalesce(tr.started_at, now()),
    updated_at            = now()
FROM chosen, tasks t, services s
WHERE tr.id = chosen.id AND t.id = tr.task_id AND s.id = t.service_id
RETURNING tr.id, tr.task_id, coalesce(tr.pipeline_run_id, ''), tr.attempt, tr.lease, tr.code_version,
          tr.code_hash, tr.input_path, tr.previous_attempts, tr.heartbeat_interval_ms,
          t.timeout_seconds, s.base_url, tr.priority, coalesce(tr.traceparent, ''),
          s.id, coalesce(s.key_id, '');

-- name: mark_running
-- Records the workers' acknowledgements of a dispatched batch ($1 ids, $2 their leases). The
-- runs are found through the primary key; each one's lease sits at the same position in $2.
-- A row locked right now belongs to the worker's own heartbeat or callback, which moves the run
-- on by itself: it is skipped rather than waited for.
UPDATE task_runs tr SET
    status     = 'running',
    deadline   = least(now() + 2 * tr.heartbeat_interval_ms * interval '1 millisecond', tr.timeout_at),
    updated_at = now()
FROM (
    SELECT id FROM task_runs
    WHERE id = ANY($1::text[]) AND status = 'dispatching'
    FOR UPDATE SKIP LOCKED
) acked
WHERE tr.id = acked.id AND tr.lease = ($2::bigint[])[array_position($1::text[], tr.id)];

-- name: back_off
-- A worker answered 429/503: the attempt did not start. Back to pending after a short, jittered
-- delay ($3 ms), keeping the attempt; the lease moves on so nothing from that dispatch is accepted.
UPDATE task_runs tr SET
    status       = 'pending',
    lease        = tr.lease + 1,
    available_at = now() + ($3::bigint * (0.8 + 0.4 * random())) * interval '1 millisecond',
    deadline     = NULL,
    updated_at   = now()
WHERE tr.id = ANY($1::text[]) AND tr.status = 'dispatching'
  AND tr.lease = ($2::bigint[])[array_position($1::text[], tr.id)];

-- name: fail_attempts
-- Ends attempts as failed: $1 ids, $2 leases (NULL element = whatever lease is current),
-- $3 errors, $4 error codes, $5 retryable flags, $6 whether to move the lease on (true when the
-- orchestrator ends the attempt itself, so the worker's late calls get 409).
-- Retryable attempts with attempts left go back to pending after the backoff (their error only in
-- previous_attempts); the others fail and land in the DLQ, all in this one statement.
-- The runs are found through the primary key; each one's values sit at its position in $1.
WITH located AS (
    SELECT tr.id, array_position($1::text[], tr.id) AS i
    FROM task_runs tr
    WHERE tr.id = ANY($1::text[])
),
target AS (
    SELECT tr.id, ($3::text[])[l.i] AS error, ($4::text[])[l.i] AS code,
           (($5::bool[])[l.i] AND tr.attempt <= t.retries) AS retry,
           retry_delay_ms(t.retry_backoff, t.retry_delay_ms, t.max_retry_delay_ms, tr.attempt) AS delay_ms
    FROM located l
    JOIN task_runs tr ON tr.id = l.id
    JOIN tasks t ON t.id = tr.task_id
    WHERE tr.status IN ('dispatching', 'running') AND tr.lease = coalesce(($2::bigint[])[l.i], tr.lease)
    FOR UPDATE OF tr
),
updated AS (
    UPDATE task_runs tr SET
        status            = CASE WHEN x.retry THEN 'pending' ELSE 'failed' END,
        attempt           = tr.attempt + CASE WHEN x.retry THEN 1 ELSE 0 END,
        available_at      = CASE WHEN x.retry THEN now() + x.delay_ms * interval '1 millisecond'
                                 ELSE tr.available_at END,
        lease             = tr.lease + CASE WHEN $6::bool THEN 1 ELSE 0 END,
        -- A retry clears the run's error (as upstream does): it belongs to the attempt that
        -- failed, which previous_attempts records; a pending run has no error of its own.
        error             = CASE WHEN x.retry THEN NULL ELSE x.error END,
        error_code        = CASE WHEN x.retry THEN NULL ELSE x.code END,
        previous_attempts = tr.previous_attempts || jsonb_build_array(jsonb_build_object(
                                'attempt', tr.attempt, 'error', x.error, 'errorCode', x.code,
                                'timestamp', now())),
        deadline          = NULL,
        completed_at      = CASE WHEN x.retry THEN NULL ELSE now() END,
        updated_at        = now()
    FROM target x
    WHERE tr.id = x.id
    RETURNING tr.*
),
dead AS (
    INSERT INTO dlq (id, task_run_id, task_id, pipeline_run_id, input_path, error, error_code,
                     attempts, code_version, code_hash, priority, metadata)
    SELECT 'dlq_' || substr(u.id, 6), u.id, u.task_id, u.pipeline_run_id, u.input_path, u.error,
           u.error_code, u.previous_attempts, u.code_version, u.code_hash, u.priority, u.metadata
    FROM updated u
    WHERE u.status = 'failed'
    ON CONFLICT (task_run_id) DO NOTHING
)
SELECT u.id, u.task_id, u.status, u.attempt, u.available_at, coalesce(u.pipeline_run_id, ''),
       coalesce(extract(epoch FROM now() - u.started_at), 0)::float8
FROM updated u;

-- name: complete
-- A successful callback: $1 id, $2 lease (NULL = current), $3 output path, $4 output size,
-- $5 assets, $6 logs path, $7 selected next. Returns the task and the seconds since the run was
-- first claimed.
UPDATE task_runs SET
    status        = 'completed',
    output_path   = $3,
    output_size   = $4,
    assets        = $5,
    logs_path     = $6,
    selected_next = $7,
    error         = NULL,
    error_code    = NULL,
    deadline      = NULL,
    completed_at  = now(),
    updated_at    = now()
WHERE id = $1 AND lease = coalesce($2, lease) AND status IN ('dispatching', 'running')
RETURNING task_id, coalesce(extract(epoch FROM now() - started_at), 0)::float8;

-- name: heartbeat
-- $1 id, $2 lease (NULL = current), $3 progress (NULL keeps it), $4 message (NULL keeps it).
UPDATE task_runs SET
    status           = 'running',
    deadline         = least(now() + 2 * heartbeat_interval_ms * interval '1 millisecond', timeout_at),
    progress         = coalesce($3, progress),
    progress_message = coalesce($4, progress_message),
    updated_at       = now()
WHERE id = $1 AND lease = coalesce($2, lease) AND status IN ('dispatching', 'running')
RETURNING status;

-- name: run_state
SELECT status, lease FROM task_runs WHERE id = $1;

-- name: sweep
-- Attempts whose deadline passed: dispatch leases that expired, silent workers, hard timeouts.
-- Nothing is locked here: fail_attempts re-checks state and lease under the row lock, so a
-- callback that commits first always wins. The last column is the kind of expiry, for metrics.
SELECT id, lease, coalesce(pipeline_run_id, ''),
       CASE WHEN status = 'dispatching' THEN 'DISPATCH_FAILED' ELSE 'TIMEOUT' END,
       CASE WHEN status = 'dispatching' THEN 'dispatch lease expired before the worker answered'
            WHEN timeout_at <= now() THEN 'task exceeded its timeout'
            ELSE 'no heartbeat within ' || (2 * heartbeat_interval_ms) || ' ms' END,
       CASE WHEN status = 'dispatching' THEN 'lease'
            WHEN timeout_at <= now() THEN 'timeout'
            ELSE 'heartbeat' END
FROM task_runs
WHERE status IN ('dispatching', 'running') AND deadline <= now()
ORDER BY deadline
LIMIT $1;
