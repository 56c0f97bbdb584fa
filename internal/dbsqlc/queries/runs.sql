-- Task run life cycle: claim, dispatch results, worker calls, failures, sweep.

-- name: Claim :many
-- Claims up to max ready runs, honouring MAX_CONCURRENCY (max_concurrency, 0 = none) across
-- every instance and each task's own concurrency. Callers run it right after LockClaimsGenericPlan
-- in the same transaction, so the in-flight counts below include every earlier claim.
-- lease_ms is the dispatch lease in milliseconds; now is the time (NULL = the database clock).
-- Outside maintenance mode 'running' it claims nothing: the mode is read here, after the lock,
-- which mode changes take too.
-- The pending index is ordered (task_id, priority, available_at, id), so "available_at <= now"
-- bounds a scan only within one (task, priority): groups lists the (task, priority) pairs that
-- have pending runs by skipping through the index (one descent per pair), and each pair's ready
-- runs are read from the front of its range. A deep queue of runs that are not ready yet (delayed
-- or backing off) thus costs a claim nothing; without groups the scan read every one of them.
WITH RECURSIVE inflight AS (
    SELECT task_id, count(*)::int AS n
    FROM task_runs
    WHERE status IN ('dispatching', 'running')
    GROUP BY task_id
),
room AS (
    -- pipeweave.claim_locked is 'false' after a TryLockClaimsGenericPlan that found the lock taken.
    SELECT CASE WHEN current_setting('pipeweave.claim_locked', true) = 'false' THEN 0
                WHEN coalesce((SELECT mode FROM orchestrator_state WHERE id = 'singleton'), 'running') <> 'running' THEN 0
                WHEN sqlc.arg('max_concurrency')::int = 0 THEN sqlc.arg('max')::int
                ELSE least(sqlc.arg('max')::int, sqlc.arg('max_concurrency')::int - (SELECT coalesce(sum(n), 0)::int FROM inflight)) END AS n
),
capacity AS (
    SELECT t.id AS task_id,
           CASE WHEN t.concurrency = 0 THEN (SELECT n FROM room)
                ELSE least((SELECT n FROM room), t.concurrency - coalesce(i.n, 0)) END AS free
    FROM tasks t
    LEFT JOIN inflight i ON i.task_id = t.id
    WHERE t.removed_in_version IS NULL AND t.paused_at IS NULL -- a paused task's runs wait
      -- Tasks with a rate limit or a concurrency key are ClaimFlowControl's: callers use that
      -- statement instead while any task has one (Engine.flowControlInUse).
      AND t.rate_limit IS NULL AND t.rate_limit_key IS NULL AND t.concurrency_key IS NULL
),
paused_pipelines AS (
    SELECT EXISTS (SELECT 1 FROM pipelines WHERE paused_at IS NOT NULL) AS any_paused
),
groups AS (
    (SELECT tr.task_id, tr.priority FROM task_runs tr
     WHERE tr.status = 'pending'
     ORDER BY tr.task_id, tr.priority
     LIMIT 1)
    UNION ALL
    SELECT nxt.task_id, nxt.priority
    FROM groups g
    CROSS JOIN LATERAL (
        SELECT tr.task_id, tr.priority FROM task_runs tr
        WHERE tr.status = 'pending' AND (tr.task_id, tr.priority) > (g.task_id, g.priority)
        ORDER BY tr.task_id, tr.priority
        LIMIT 1
    ) nxt
),
candidates AS (
    SELECT r.id, r.priority, r.available_at, c.task_id, c.free
    FROM capacity c
    JOIN groups g ON g.task_id = c.task_id
    CROSS JOIN LATERAL (
        SELECT tr.id, tr.priority, tr.available_at
        FROM task_runs tr
        WHERE tr.task_id = c.task_id AND tr.priority = g.priority AND tr.status = 'pending'
          AND tr.available_at <= coalesce(sqlc.narg('now')::timestamptz, now())
          -- The items of a map node with maxConcurrency (migration 016) are ClaimFlowControl's,
          -- which callers use while any is pending: taken here they would not be bounded. They
          -- are passed over inside the LIMIT, so that they never hold back the task's other runs.
          AND tr.map_concurrency IS NULL
          -- The nodes of a paused pipeline wait (parked ones are not ready anyway; this holds
          -- for one made pending by a transaction that ran across the pause).
          AND (tr.pipeline_run_id IS NULL OR NOT (SELECT any_paused FROM paused_pipelines) OR NOT EXISTS (
                SELECT 1 FROM pipeline_runs pr JOIN pipelines p ON p.id = pr.pipeline_id
                WHERE pr.id = tr.pipeline_run_id AND p.paused_at IS NOT NULL))
        ORDER BY tr.available_at, tr.id
        LIMIT greatest(c.free, 0)
        FOR UPDATE SKIP LOCKED
    ) r
    WHERE c.free > 0
),
ranked AS (
    -- A task's runs of several priorities together stay within its free places.
    SELECT id, priority, available_at, free,
           row_number() OVER (PARTITION BY task_id ORDER BY priority, available_at, id) AS place
    FROM candidates
),
chosen AS (
    SELECT id FROM ranked
    WHERE place <= free
    ORDER BY priority, available_at, id
    LIMIT greatest((SELECT n FROM room), 0)
),
claimed AS (
    UPDATE task_runs tr SET
        status                = 'dispatching',
        lease                 = tr.lease + 1,
        deadline              = coalesce(sqlc.narg('now')::timestamptz, now()) + sqlc.arg('lease_ms')::bigint * interval '1 millisecond',
        timeout_at            = coalesce(sqlc.narg('now')::timestamptz, now()) + t.timeout_seconds * interval '1 second',
        heartbeat_interval_ms = t.heartbeat_interval_ms,
        code_version          = t.code_version,
        code_hash             = t.code_hash,
        started_at            = coalesce(tr.started_at, coalesce(sqlc.narg('now')::timestamptz, now())),
        updated_at            = coalesce(sqlc.narg('now')::timestamptz, now())
    FROM chosen, tasks t, services s
    WHERE tr.id = chosen.id AND t.id = tr.task_id AND s.id = t.service_id
    RETURNING tr.id, tr.task_id, tr.pipeline_run_id, tr.predecessors, tr.attempt, tr.lease, tr.code_version,
              tr.code_hash, tr.input_path, tr.previous_attempts, tr.heartbeat_interval_ms, tr.input,
              t.timeout_seconds, s.base_url, tr.priority, tr.traceparent, s.id AS service_id, s.key_id,
              s.dispatch_batch_max
)
SELECT c.id, c.task_id, coalesce(c.pipeline_run_id, '') AS pipeline_run_id, c.attempt, c.lease, c.code_version,
       c.code_hash, c.input_path, c.previous_attempts, c.heartbeat_interval_ms,
       -- The inline input: the run's own, or its pipeline run's (NULL: stored at input_path; a
       -- map item's stored input has a path of its own).
       coalesce(c.input, (SELECT pr.input FROM pipeline_runs pr WHERE pr.id = c.pipeline_run_id AND pr.input_path = c.input_path)) AS input,
       c.timeout_seconds, c.base_url, c.priority, coalesce(c.traceparent, '') AS traceparent,
       c.service_id, coalesce(c.key_id, '') AS key_id, c.dispatch_batch_max,
       -- The outputs of the run's completed predecessors, in task id order (the output itself
       -- when it is inline), read once per run: its dispatch needs no query of its own.
       coalesce(up.task_ids, '{}')::text[] AS up_task_ids,
       coalesce(up.output_paths, '{}')::text[] AS up_output_paths,
       coalesce(up.assets, '{}')::jsonb[] AS up_assets,
       coalesce(up.outputs, '{}')::bytea[] AS up_outputs
FROM claimed c
LEFT JOIN LATERAL (
    SELECT array_agg(x.task_id ORDER BY x.task_id) AS task_ids,
           array_agg(coalesce(x.output_path, '') ORDER BY x.task_id) AS output_paths,
           array_agg(x.assets ORDER BY x.task_id) AS assets,
           array_agg(x.output ORDER BY x.task_id) AS outputs
    FROM task_runs x
    WHERE x.pipeline_run_id = c.pipeline_run_id AND x.task_id = ANY(c.predecessors)
      AND x.superseded_by IS NULL AND x.status = 'completed' AND x.item_index IS NULL
      -- A run without predecessors (an entry node, a map item) reads nothing (migration 017).
      AND cardinality(c.predecessors) > 0
) up ON true;

-- name: ClaimFlowControl :many
-- Claim with rate limits and concurrency per key (migration 012), for when some task has one:
-- the same claim, and each task's free places are also capped by its rate limit's budget in
-- the current window, and a keyed task's runs are read key by key. It returns one more row,
-- with an empty id, when a rate limit's budget is spent (refill_ms: when the earliest such
-- window ends).
-- Claims up to max ready runs, honouring MAX_CONCURRENCY (max_concurrency, 0 = none) across
-- every instance and each task's own concurrency. Callers run it right after LockClaimsGenericPlan
-- in the same transaction, so the in-flight counts below include every earlier claim.
-- lease_ms is the dispatch lease in milliseconds; now is the time (NULL = the database clock).
-- Outside maintenance mode 'running' it claims nothing: the mode is read here, after the lock,
-- which mode changes take too.
-- The pending index is ordered (task_id, priority, available_at, id), so "available_at <= now"
-- bounds a scan only within one (task, priority): groups lists the (task, priority) pairs that
-- have pending runs by skipping through the index (one descent per pair), and each pair's ready
-- runs are read from the front of its range. A deep queue of runs that are not ready yet (delayed
-- or backing off) thus costs a claim nothing; without groups the scan read every one of them.
WITH RECURSIVE inflight AS (
    SELECT task_id, count(*)::int AS n
    FROM task_runs
    WHERE status IN ('dispatching', 'running')
    GROUP BY task_id
),
room AS (
    -- pipeweave.claim_locked is 'false' after a TryLockClaimsGenericPlan that found the lock taken.
    SELECT CASE WHEN current_setting('pipeweave.claim_locked', true) = 'false' THEN 0
                WHEN coalesce((SELECT mode FROM orchestrator_state WHERE id = 'singleton'), 'running') <> 'running' THEN 0
                WHEN sqlc.arg('max_concurrency')::int = 0 THEN sqlc.arg('max')::int
                ELSE least(sqlc.arg('max')::int, sqlc.arg('max_concurrency')::int - (SELECT coalesce(sum(n), 0)::int FROM inflight)) END AS n
),
-- The rate limits' windows are read at clock_timestamp(), not now(): now() is when the
-- transaction began, before it waited for the claim lock, so two claims the lock serializes could
-- see their times in the opposite order; this statement runs with the lock held. (Materialized:
-- read once.)
now_ms AS MATERIALIZED (
    SELECT (extract(epoch FROM t) * 1000)::bigint AS ms, t
    FROM (SELECT coalesce(sqlc.narg('now')::timestamptz, clock_timestamp()) AS t) x
),
-- Rate limits (migration 012): the tasks that have one, with their bucket ('task:' || id for a
-- task's own limit, 'key:' || key for a named one; a key since deleted limits nothing) and the
-- start of the bucket's current fixed window. Tasks without one are not in it.
limited AS (
    SELECT x.task_id, x.bucket, x.lim, x.period_ms, ((SELECT ms FROM now_ms) / x.period_ms) * x.period_ms AS window_start_ms
    FROM (SELECT t.id AS task_id, coalesce('key:' || t.rate_limit_key, 'task:' || t.id) AS bucket,
                 coalesce(rl.max_runs, t.rate_limit) AS lim, coalesce(rl.period_ms, t.rate_limit_period_ms) AS period_ms
          FROM tasks t
          LEFT JOIN rate_limits rl ON rl.key = t.rate_limit_key
          WHERE t.rate_limit IS NOT NULL OR t.rate_limit_key IS NOT NULL) x
    WHERE x.lim IS NOT NULL AND x.period_ms > 0
),
-- What each bucket may still claim in its window. A stored window newer than this claim's (a
-- claim whose time is behind one already counted, e.g. an injected clock or another instance's
-- clock skew) leaves it nothing: the window row never moves back. refill_ms: when it may claim again.
budgets AS (
    SELECT DISTINCT l.bucket, l.lim, l.period_ms, l.window_start_ms,
           CASE WHEN w.window_start_ms > l.window_start_ms THEN 0
                ELSE greatest(l.lim - CASE WHEN w.window_start_ms = l.window_start_ms THEN w.used ELSE 0 END, 0) END AS budget,
           greatest(w.window_start_ms, l.window_start_ms) + l.period_ms AS refill_ms
    FROM limited l
    LEFT JOIN rate_limit_windows w ON w.bucket = l.bucket
),
capacity AS (
    SELECT t.id AS task_id,
           least(CASE WHEN t.concurrency = 0 THEN (SELECT n FROM room)
                      ELSE least((SELECT n FROM room), t.concurrency - coalesce(i.n, 0)) END,
                 coalesce(b.budget, 2147483647)) AS free,
           l.bucket, b.budget,
           -- A keyed task's runs come from its keys (keys below); 0: the task has no key.
           CASE WHEN t.concurrency_key IS NOT NULL THEN coalesce(t.concurrency_per_key, 0) ELSE 0 END AS per_key
    FROM tasks t
    LEFT JOIN inflight i ON i.task_id = t.id
    LEFT JOIN limited l ON l.task_id = t.id
    LEFT JOIN budgets b ON b.bucket = l.bucket
    WHERE t.removed_in_version IS NULL AND t.paused_at IS NULL -- a paused task's runs wait
),
paused_pipelines AS (
    SELECT EXISTS (SELECT 1 FROM pipelines WHERE paused_at IS NOT NULL) AS any_paused
),
groups AS (
    (SELECT tr.task_id, tr.priority FROM task_runs tr
     WHERE tr.status = 'pending'
     ORDER BY tr.task_id, tr.priority
     LIMIT 1)
    UNION ALL
    SELECT nxt.task_id, nxt.priority
    FROM groups g
    CROSS JOIN LATERAL (
        SELECT tr.task_id, tr.priority FROM task_runs tr
        WHERE tr.status = 'pending' AND (tr.task_id, tr.priority) > (g.task_id, g.priority)
        ORDER BY tr.task_id, tr.priority
        LIMIT 1
    ) nxt
),
-- Concurrency per key: the distinct keys of the pending runs of each keyed task that has room,
-- by skipping through task_runs_pending_keyed (one descent per key). Each key's ready runs are
-- read from the front of its range below, at most as many as the key has room for, so a busy
-- key never holds up the others.
keys AS (
    SELECT c.task_id, k.concurrency_key AS key
    FROM capacity c
    CROSS JOIN LATERAL (
        SELECT tr.concurrency_key FROM task_runs tr
        WHERE tr.task_id = c.task_id AND tr.status = 'pending' AND tr.concurrency_key IS NOT NULL
        ORDER BY tr.concurrency_key
        LIMIT 1
    ) k
    WHERE c.per_key > 0 AND c.free > 0
    UNION ALL
    SELECT k.task_id, nxt.concurrency_key
    FROM keys k
    CROSS JOIN LATERAL (
        SELECT tr.concurrency_key FROM task_runs tr
        WHERE tr.task_id = k.task_id AND tr.status = 'pending' AND tr.concurrency_key IS NOT NULL
          AND tr.concurrency_key > k.key
        ORDER BY tr.concurrency_key
        LIMIT 1
    ) nxt
),
-- Map items with maxConcurrency (migration 016): the map rows that have pending bounded items,
-- by skipping through task_runs_pending_bounded (one descent per map row), with their bound and
-- their concurrency key (every item of a map row has the map row's).
bounded AS (
    (SELECT tr.pipeline_run_id, tr.task_id, tr.map_concurrency AS lim, tr.concurrency_key FROM task_runs tr
     WHERE tr.status = 'pending' AND tr.map_concurrency IS NOT NULL
     ORDER BY tr.pipeline_run_id, tr.task_id
     LIMIT 1)
    UNION ALL
    SELECT nxt.pipeline_run_id, nxt.task_id, nxt.lim, nxt.concurrency_key
    FROM bounded b
    CROSS JOIN LATERAL (
        SELECT tr.pipeline_run_id, tr.task_id, tr.map_concurrency AS lim, tr.concurrency_key FROM task_runs tr
        WHERE tr.status = 'pending' AND tr.map_concurrency IS NOT NULL
          AND (tr.pipeline_run_id, tr.task_id) > (b.pipeline_run_id, b.task_id)
        ORDER BY tr.pipeline_run_id, tr.task_id
        LIMIT 1
    ) nxt
),
candidates AS (
    SELECT r.id, r.priority, r.available_at, c.task_id, c.free, c.bucket, c.budget, r.concurrency_key, NULL::int AS kroom
    FROM capacity c
    JOIN groups g ON g.task_id = c.task_id
    CROSS JOIN LATERAL (
        SELECT tr.id, tr.priority, tr.available_at, tr.concurrency_key
        FROM task_runs tr
        WHERE tr.task_id = c.task_id AND tr.priority = g.priority AND tr.status = 'pending'
          AND tr.available_at <= coalesce(sqlc.narg('now')::timestamptz, now())
          -- Bounded map items come from bounded alone (passed over inside the LIMIT).
          AND tr.map_concurrency IS NULL
          -- The nodes of a paused pipeline wait (parked ones are not ready anyway; this holds
          -- for one made pending by a transaction that ran across the pause).
          AND (tr.pipeline_run_id IS NULL OR NOT (SELECT any_paused FROM paused_pipelines) OR NOT EXISTS (
                SELECT 1 FROM pipeline_runs pr JOIN pipelines p ON p.id = pr.pipeline_id
                WHERE pr.id = tr.pipeline_run_id AND p.paused_at IS NOT NULL))
        ORDER BY tr.available_at, tr.id
        LIMIT greatest(c.free, 0)
        FOR UPDATE SKIP LOCKED
    ) r
    -- A keyed task's runs without a key (pipeline nodes, runs enqueued before the key was
    -- registered) are taken here when they reach the front of their task's queue.
    WHERE c.free > 0 AND (c.per_key = 0 OR r.concurrency_key IS NULL)
    UNION ALL
    SELECT r.id, r.priority, r.available_at, c.task_id, c.free, c.bucket, c.budget, k.key,
           CASE WHEN k.key = '' THEN NULL ELSE c.per_key - f.n END
    FROM keys k
    JOIN capacity c ON c.task_id = k.task_id
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS n FROM task_runs x
        WHERE x.task_id = k.task_id AND x.concurrency_key = k.key AND x.status IN ('dispatching', 'running')
    ) f
    CROSS JOIN LATERAL (
        SELECT tr.id, tr.priority, tr.available_at
        FROM task_runs tr
        WHERE tr.task_id = k.task_id AND tr.concurrency_key = k.key AND tr.status = 'pending'
          AND tr.available_at <= coalesce(sqlc.narg('now')::timestamptz, now())
          AND tr.map_concurrency IS NULL
          AND (tr.pipeline_run_id IS NULL OR NOT (SELECT any_paused FROM paused_pipelines) OR NOT EXISTS (
                SELECT 1 FROM pipeline_runs pr JOIN pipelines p ON p.id = pr.pipeline_id
                WHERE pr.id = tr.pipeline_run_id AND p.paused_at IS NOT NULL))
        ORDER BY tr.priority, tr.available_at, tr.id
        -- The key '' (the input has no value at the pointer) is limited by the task alone.
        LIMIT CASE WHEN k.key = '' THEN greatest(c.free, 0) ELSE greatest(least(c.free, c.per_key - f.n), 0) END
        FOR UPDATE SKIP LOCKED
    ) r
    UNION ALL
    -- Each map row's bounded items, at most as many as its bound leaves room for (its items in
    -- flight counted through task_runs_inflight_bounded); kroom: the room of their concurrency
    -- key when their task is keyed, which ranked applies to them and the key's other runs together.
    SELECT r.id, r.priority, r.available_at, c.task_id, c.free, c.bucket, c.budget, b.concurrency_key,
           CASE WHEN c.per_key > 0 AND b.concurrency_key <> '' THEN c.per_key - kf.n END
    FROM bounded b
    JOIN capacity c ON c.task_id = b.task_id
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS n FROM task_runs x
        WHERE x.pipeline_run_id = b.pipeline_run_id AND x.task_id = b.task_id
          AND x.status IN ('dispatching', 'running') AND x.map_concurrency IS NOT NULL
    ) f
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS n FROM task_runs x
        WHERE c.per_key > 0 AND b.concurrency_key <> ''
          AND x.task_id = b.task_id AND x.concurrency_key = b.concurrency_key AND x.status IN ('dispatching', 'running')
    ) kf
    CROSS JOIN LATERAL (
        SELECT tr.id, tr.priority, tr.available_at
        FROM task_runs tr
        WHERE tr.pipeline_run_id = b.pipeline_run_id AND tr.task_id = b.task_id AND tr.status = 'pending'
          AND tr.map_concurrency IS NOT NULL
          AND tr.available_at <= coalesce(sqlc.narg('now')::timestamptz, now())
          AND (NOT (SELECT any_paused FROM paused_pipelines) OR NOT EXISTS (
                SELECT 1 FROM pipeline_runs pr JOIN pipelines p ON p.id = pr.pipeline_id
                WHERE pr.id = tr.pipeline_run_id AND p.paused_at IS NOT NULL))
        ORDER BY tr.priority, tr.available_at, tr.id
        LIMIT greatest(least(c.free, b.lim - f.n), 0)
        FOR UPDATE SKIP LOCKED
    ) r
    WHERE c.free > 0
),
ranked AS (
    -- A task's runs of several priorities together stay within its free places, the runs of
    -- the tasks sharing a rate limit within its budget, and the runs of one concurrency key
    -- (from keys and from bounded map items) within the key's room.
    SELECT id, priority, available_at, free, budget, kroom,
           row_number() OVER (PARTITION BY task_id ORDER BY priority, available_at, id) AS place,
           CASE WHEN bucket IS NULL THEN 0
                ELSE row_number() OVER (PARTITION BY bucket ORDER BY priority, available_at, id) END AS bplace,
           CASE WHEN kroom IS NULL THEN 0
                ELSE row_number() OVER (PARTITION BY task_id, concurrency_key ORDER BY priority, available_at, id) END AS kplace
    FROM candidates
),
chosen AS (
    SELECT id FROM ranked
    WHERE place <= free AND (budget IS NULL OR bplace <= budget) AND (kroom IS NULL OR kplace <= kroom)
    ORDER BY priority, available_at, id
    LIMIT greatest((SELECT n FROM room), 0)
),
claimed AS (
    UPDATE task_runs tr SET
        status                = 'dispatching',
        lease                 = tr.lease + 1,
        deadline              = coalesce(sqlc.narg('now')::timestamptz, now()) + sqlc.arg('lease_ms')::bigint * interval '1 millisecond',
        timeout_at            = coalesce(sqlc.narg('now')::timestamptz, now()) + t.timeout_seconds * interval '1 second',
        heartbeat_interval_ms = t.heartbeat_interval_ms,
        code_version          = t.code_version,
        code_hash             = t.code_hash,
        -- The time the rate limits' windows were read at, so that a run starts in the window
        -- that counted it.
        started_at            = coalesce(tr.started_at, (SELECT t FROM now_ms)),
        updated_at            = coalesce(sqlc.narg('now')::timestamptz, now())
    FROM chosen, tasks t, services s
    WHERE tr.id = chosen.id AND t.id = tr.task_id AND s.id = t.service_id
    RETURNING tr.id, tr.task_id, tr.pipeline_run_id, tr.predecessors, tr.attempt, tr.lease, tr.code_version,
              tr.code_hash, tr.input_path, tr.previous_attempts, tr.heartbeat_interval_ms, tr.input,
              t.timeout_seconds, s.base_url, tr.priority, tr.traceparent, s.id AS service_id, s.key_id,
              s.dispatch_batch_max
),
-- The runs each rate-limited bucket took, counted in its window.
taken AS (
    SELECT l.bucket, count(*)::int AS n
    FROM claimed c JOIN limited l ON l.task_id = c.task_id
    GROUP BY l.bucket
),
counted AS (
    INSERT INTO rate_limit_windows AS w (bucket, window_start_ms, used, max_runs, period_ms)
    SELECT b.bucket, b.window_start_ms, tk.n, b.lim, b.period_ms
    FROM taken tk JOIN budgets b ON b.bucket = tk.bucket
    ON CONFLICT (bucket) DO UPDATE SET
        used            = CASE WHEN w.window_start_ms = excluded.window_start_ms THEN w.used + excluded.used ELSE excluded.used END,
        window_start_ms = excluded.window_start_ms,
        max_runs        = excluded.max_runs,
        period_ms       = excluded.period_ms
    WHERE excluded.window_start_ms >= w.window_start_ms
)
SELECT c.id, c.task_id, coalesce(c.pipeline_run_id, '') AS pipeline_run_id, c.attempt, c.lease, c.code_version,
       c.code_hash, c.input_path, c.previous_attempts, c.heartbeat_interval_ms,
       -- The inline input: the run's own, or its pipeline run's (NULL: stored at input_path; a
       -- map item's stored input has a path of its own).
       coalesce(c.input, (SELECT pr.input FROM pipeline_runs pr WHERE pr.id = c.pipeline_run_id AND pr.input_path = c.input_path)) AS input,
       c.timeout_seconds, c.base_url, c.priority, coalesce(c.traceparent, '') AS traceparent,
       c.service_id, coalesce(c.key_id, '') AS key_id, c.dispatch_batch_max,
       -- The outputs of the run's completed predecessors, in task id order (the output itself
       -- when it is inline), read once per run: its dispatch needs no query of its own.
       coalesce(up.task_ids, '{}')::text[] AS up_task_ids,
       coalesce(up.output_paths, '{}')::text[] AS up_output_paths,
       coalesce(up.assets, '{}')::jsonb[] AS up_assets,
       coalesce(up.outputs, '{}')::bytea[] AS up_outputs,
       0::bigint AS refill_ms
FROM claimed c
LEFT JOIN LATERAL (
    SELECT array_agg(x.task_id ORDER BY x.task_id) AS task_ids,
           array_agg(coalesce(x.output_path, '') ORDER BY x.task_id) AS output_paths,
           array_agg(x.assets ORDER BY x.task_id) AS assets,
           array_agg(x.output ORDER BY x.task_id) AS outputs
    FROM task_runs x
    WHERE x.pipeline_run_id = c.pipeline_run_id AND x.task_id = ANY(c.predecessors)
      AND x.superseded_by IS NULL AND x.status = 'completed' AND x.item_index IS NULL
      -- A run without predecessors (an entry node, a map item) reads nothing (migration 017).
      AND cardinality(c.predecessors) > 0
) up ON true
UNION ALL
-- One more row, with an empty id, when a rate limit's budget is spent: refill_ms is when the
-- earliest such window ends (epoch ms), so that the loop claims again then.
SELECT '', '', '', 0, 0, 0, '', '', '[]'::jsonb, NULL, NULL, 0, '', 0, '', '', '', 0, '{}', '{}', '{}', '{}', r.refill
FROM (SELECT min(b.refill_ms) AS refill
      FROM budgets b LEFT JOIN taken tk ON tk.bucket = b.bucket
      WHERE b.budget - coalesce(tk.n, 0) <= 0) r
WHERE r.refill IS NOT NULL;

-- name: MarkRunning :exec
-- Records the workers' acknowledgements of a dispatched batch (ids, and leases[i] the lease of ids[i]). The
-- runs are found through the primary key; each one's lease sits at the same position in leases.
-- A row locked right now belongs to the worker's own heartbeat or callback, which moves the run
-- on by itself: it is skipped rather than waited for. The status test is a CASE so that the
-- planner cannot scan a partial index over runs in flight (and its dead entries) instead of the
-- primary key, as CompleteStandalone's.
UPDATE task_runs tr SET
    status     = 'running',
    deadline   = least(now() + 2 * tr.heartbeat_interval_ms * interval '1 millisecond', tr.timeout_at),
    updated_at = now()
FROM (
    SELECT id FROM task_runs
    WHERE id = ANY(sqlc.arg('ids')::text[]) AND CASE status WHEN 'dispatching' THEN true ELSE false END
    FOR UPDATE SKIP LOCKED
) acked
WHERE tr.id = acked.id AND tr.lease = (sqlc.arg('leases')::bigint[])[array_position(sqlc.arg('ids')::text[], tr.id)];

-- name: BackOff :exec
-- A worker answered 429/503: the attempt did not start. Back to pending after a short, jittered
-- delay (delay_ms), keeping the attempt; the lease moves on so nothing from that dispatch is accepted.
UPDATE task_runs tr SET
    status       = 'pending',
    lease        = tr.lease + 1,
    available_at = now() + (sqlc.arg('delay_ms')::bigint * (0.8 + 0.4 * random())) * interval '1 millisecond',
    deadline     = NULL,
    updated_at   = now()
WHERE tr.id = ANY(sqlc.arg('ids')::text[]) AND tr.status = 'dispatching'
  AND tr.lease = (sqlc.arg('leases')::bigint[])[array_position(sqlc.arg('ids')::text[], tr.id)];

-- name: FailAttempts :many
-- Ends attempts as failed: ids, leases (-1 = whatever lease is current), errors, error codes,
-- retryable flags, and bump: whether to move the lease on (true when the orchestrator ends the
-- attempt itself, so the worker's late calls get 409). now is the time (NULL = the database clock).
-- Retryable attempts with attempts left go back to pending after the backoff (their error only in
-- previous_attempts); the others fail and land in the DLQ, all in this one statement.
-- The runs are found through the primary key; each one's values sit at its position in ids.
WITH located AS (
    SELECT tr.id, array_position(sqlc.arg('ids')::text[], tr.id) AS i
    FROM task_runs tr
    WHERE tr.id = ANY(sqlc.arg('ids')::text[])
),
target AS (
    SELECT tr.id, (sqlc.arg('errors')::text[])[l.i] AS error, (sqlc.arg('codes')::text[])[l.i] AS code,
           ((sqlc.arg('retryable')::bool[])[l.i] AND tr.attempt <= t.retries) AS retry,
           retry_delay_ms(t.retry_backoff, t.retry_delay_ms, t.max_retry_delay_ms, tr.attempt) AS delay_ms
    FROM located l
    JOIN task_runs tr ON tr.id = l.id
    JOIN tasks t ON t.id = tr.task_id
    WHERE tr.status IN ('dispatching', 'running') AND tr.lease = coalesce(nullif((sqlc.arg('leases')::bigint[])[l.i], -1), tr.lease)
    ORDER BY tr.id -- the order CompleteStandalone locks in, so that the two never deadlock
    FOR UPDATE OF tr
),
updated AS (
    UPDATE task_runs tr SET
        status            = CASE WHEN x.retry THEN 'pending' ELSE 'failed' END,
        attempt           = tr.attempt + CASE WHEN x.retry THEN 1 ELSE 0 END,
        available_at      = CASE WHEN x.retry THEN coalesce(sqlc.narg('now')::timestamptz, now()) + x.delay_ms * interval '1 millisecond'
                                 ELSE tr.available_at END,
        lease             = tr.lease + CASE WHEN sqlc.arg('bump')::bool THEN 1 ELSE 0 END,
        -- A retry clears the run's error (as upstream does): it belongs to the attempt that
        -- failed, which previous_attempts records; a pending run has no error of its own.
        error             = CASE WHEN x.retry THEN NULL ELSE x.error END,
        error_code        = CASE WHEN x.retry THEN NULL ELSE x.code END,
        previous_attempts = tr.previous_attempts || jsonb_build_array(jsonb_build_object(
                                'attempt', tr.attempt, 'error', x.error, 'errorCode', x.code,
                                'timestamp', coalesce(sqlc.narg('now')::timestamptz, now()))),
        deadline          = NULL,
        completed_at      = CASE WHEN x.retry THEN NULL ELSE coalesce(sqlc.narg('now')::timestamptz, now()) END,
        updated_at        = coalesce(sqlc.narg('now')::timestamptz, now())
    FROM target x
    WHERE tr.id = x.id
    RETURNING tr.*
),
dead AS (
    INSERT INTO dlq (id, task_run_id, task_id, pipeline_run_id, input_path, input, error, error_code,
                     attempts, code_version, code_hash, priority, metadata)
    SELECT 'dlq_' || substr(u.id, 6), u.id, u.task_id, u.pipeline_run_id, u.input_path, u.input, u.error,
           u.error_code, u.previous_attempts, u.code_version, u.code_hash, u.priority, u.metadata
    FROM updated u
    WHERE u.status = 'failed'
    ON CONFLICT (task_run_id) DO NOTHING
)
SELECT u.id, u.task_id, u.status, u.attempt, u.available_at, coalesce(u.pipeline_run_id, '') AS pipeline_run_id,
       coalesce(extract(epoch FROM coalesce(sqlc.narg('now')::timestamptz, now()) - u.started_at), 0)::float8 AS seconds
FROM updated u;

-- name: Complete :one
-- A successful callback of run id under lease (NULL = the current one). Returns the task and the
-- seconds since the run was first claimed. output is the output sent inline; without it, a
-- callback that names the output of another run (a result reused through the idempotency check)
-- takes a copy of that run's inline output, if it has one.
UPDATE task_runs SET
    status        = 'completed',
    output_path   = sqlc.narg('output_path'),
    output        = coalesce(sqlc.narg('output')::bytea, (
                        SELECT src.output FROM task_runs src
                        WHERE src.id = split_part(sqlc.narg('output_path')::text, '/', 2) AND src.id <> sqlc.arg('id')
                          AND src.output_path = sqlc.narg('output_path')::text)),
    output_size   = sqlc.narg('output_size'),
    assets        = sqlc.narg('assets'),
    logs_path     = sqlc.narg('logs_path'),
    selected_next = sqlc.narg('selected_next'),
    error         = NULL,
    error_code    = NULL,
    deadline      = NULL,
    completed_at  = now(),
    updated_at    = now()
WHERE id = sqlc.arg('id') AND lease = coalesce(sqlc.narg('lease')::bigint, lease) AND status IN ('dispatching', 'running')
RETURNING task_id, coalesce(extract(epoch FROM now() - started_at), 0)::float8 AS seconds;

-- name: CompleteStandalone :many
-- Successful callbacks of many runs at once (a group commit): ids, leases (-1 = the current one),
-- and each one's output path ('' = none), output sent inline (NULL = none), output size (0 =
-- none), assets (JSON, '' = none) and logs path ('' = none) at its position. Only runs that are
-- still in the attempt under the lease complete, locked in id order: runs outside pipelines, or
-- with in_pipelines runs of pipeline runs (which the caller has locked, in a group commit's
-- transaction: callbacksInTx). They are returned with completed true, their task and the
-- seconds since the run was first claimed. Every other run named that exists is returned with
-- completed false and its pipeline run ('' = none), for the caller to apply its callback on its
-- own (in a transaction that locks that pipeline run first).
-- The runs are found through the primary key alone, one probe per id, and each one's values read
-- at its position in the arrays: a join of the locked rows with all the unnested arrays made the
-- planner loop over them once per row (quadratic in the batch), and a status condition the planner could match to the partial
-- indexes over runs in flight made it scan one of them, with every dead entry that finished runs
-- left there since the last vacuum, at every group commit (README, Performance).
WITH target AS (
    -- Each id with its position, each run probed through the primary key.
    SELECT tr.id, x.i
    FROM unnest(sqlc.arg('ids')::text[]) WITH ORDINALITY AS x(id, i)
    JOIN task_runs tr ON tr.id = x.id
    WHERE (tr.pipeline_run_id IS NOT NULL) = sqlc.arg('in_pipelines')::bool
      -- status IN ('dispatching', 'running'), in a form no partial index's predicate matches
      AND CASE tr.status WHEN 'dispatching' THEN true WHEN 'running' THEN true ELSE false END
      AND tr.lease = coalesce(nullif((sqlc.arg('leases')::bigint[])[x.i], -1), tr.lease)
    ORDER BY tr.id
    FOR UPDATE OF tr
),
done AS (
    UPDATE task_runs tr SET
        status        = 'completed',
        output_path   = nullif((sqlc.arg('output_paths')::text[])[t.i], ''),
        output        = (sqlc.arg('outputs')::bytea[])[t.i],
        output_size   = nullif((sqlc.arg('output_sizes')::bigint[])[t.i], 0),
        assets        = nullif((sqlc.arg('assets')::text[])[t.i], '')::jsonb,
        logs_path     = nullif((sqlc.arg('logs_paths')::text[])[t.i], ''),
        selected_next = NULL,
        error         = NULL,
        error_code    = NULL,
        deadline      = NULL,
        completed_at  = now(),
        updated_at    = now()
    FROM target t
    WHERE tr.id = t.id
    RETURNING tr.id, tr.task_id, coalesce(extract(epoch FROM now() - tr.started_at), 0)::float8 AS seconds,
              tr.pipeline_run_id IS NULL AS standalone, tr.status, tr.attempt, tr.error, tr.error_code,
              tr.metadata, tr.schedule_id, tr.schedule_slot, tr.created_at, tr.completed_at
),
-- While pipeweave.bulk_final is 'on' the row triggers skip these rows, and this statement
-- counts them (count_final_status) and queues their task_run.completed deliveries
-- (webhook_deliveries_of, as webhook_emit does) itself (migrations/023_bulk_final_counts.sql).
bulk AS (
    SELECT current_setting('pipeweave.bulk_final', true) IS NOT DISTINCT FROM 'on' AS on
),
counted AS (
    INSERT INTO run_status_deltas (status, n)
    SELECT 'completed', count(*) FROM done WHERE (SELECT bulk.on FROM bulk)
    HAVING count(*) > 0
),
announced AS (
    -- The events' data are built only when a webhook wants them (one read of webhooks).
    INSERT INTO webhook_deliveries (id, webhook_id, event, payload)
    SELECT delivery_id, webhook, event_name, body FROM webhook_deliveries_of('task_run.completed', ARRAY(
        SELECT webhook_task_run_data(d.id, d.task_id, d.status, d.attempt, d.error, d.error_code, d.metadata,
                                     d.schedule_id, d.schedule_slot, d.created_at, d.completed_at)
        FROM done d
        WHERE d.standalone AND (SELECT bulk.on FROM bulk) AND (SELECT webhook_wanted('task_run.completed'))
        ORDER BY d.id))
)
SELECT d.id, true AS completed, d.task_id, d.seconds, ''::text AS pipeline_run_id FROM done d
UNION ALL
SELECT tr.id, false, '', 0, coalesce(tr.pipeline_run_id, '')
FROM task_runs tr
WHERE tr.id = ANY(sqlc.arg('ids')::text[]) AND tr.id NOT IN (SELECT id FROM done);

-- name: Heartbeat :one
-- Run id under lease (NULL = the current one); a NULL progress or message keeps the one stored.
UPDATE task_runs SET
    status           = 'running',
    deadline         = least(now() + 2 * heartbeat_interval_ms * interval '1 millisecond', timeout_at),
    progress         = coalesce(sqlc.narg('progress')::int, progress),
    progress_message = coalesce(sqlc.narg('message')::text, progress_message),
    updated_at       = now()
WHERE id = sqlc.arg('id') AND lease = coalesce(sqlc.narg('lease')::bigint, lease) AND status IN ('dispatching', 'running')
RETURNING status;

-- name: RunState :one
SELECT status, lease FROM task_runs WHERE id = $1;

-- name: Sweep :many
-- Attempts whose deadline passed: dispatch leases that expired, silent workers, hard timeouts.
-- Nothing is locked here: FailAttempts re-checks state and lease under the row lock, so a
-- callback that commits first always wins. kind is the kind of expiry, for metrics; now is the
-- time (NULL = the database clock).
SELECT id, lease, coalesce(pipeline_run_id, '') AS pipeline_run_id,
       CASE WHEN status = 'dispatching' THEN 'DISPATCH_FAILED' ELSE 'TIMEOUT' END::text AS code,
       CASE WHEN status = 'dispatching' THEN 'dispatch lease expired before the worker answered'
            WHEN timeout_at <= coalesce(sqlc.narg('now')::timestamptz, now()) THEN 'task exceeded its timeout'
            ELSE 'no heartbeat within ' || (2 * heartbeat_interval_ms) || ' ms' END::text AS message,
       CASE WHEN status = 'dispatching' THEN 'lease'
            WHEN timeout_at <= coalesce(sqlc.narg('now')::timestamptz, now()) THEN 'timeout'
            ELSE 'heartbeat' END::text AS kind
FROM task_runs
WHERE status IN ('dispatching', 'running') AND deadline <= coalesce(sqlc.narg('now')::timestamptz, now())
ORDER BY deadline
LIMIT sqlc.arg('max')::int;

-- name: CancelStandaloneRun :execrows
-- Cancels run id, outside any pipeline run, unless it has ended: a pending run is never claimed;
-- the worker of a dispatched or running attempt learns it from shouldCancel on its next
-- heartbeat, and its late callback changes nothing. 0 rows: the run does not exist, belongs to a
-- pipeline run or has ended.
UPDATE task_runs SET status = 'cancelled', error = 'cancelled by request', error_code = 'CANCELLED', deadline = NULL,
                     completed_at = now(), updated_at = now()
WHERE id = sqlc.arg('id') AND pipeline_run_id IS NULL AND status IN ('pending', 'dispatching', 'running');

-- name: BulkFinalOn :exec
-- CompleteStandalone counts and announces its completions itself, and the row triggers skip
-- them, until BulkFinalOff (migrations/023_bulk_final_counts.sql). Sent right before it, in its
-- transaction.
SELECT set_config('pipeweave.bulk_final', 'on', true);

-- name: BulkFinalOff :exec
-- Ends BulkFinalOn: the statements after it go through the row triggers again.
SELECT set_config('pipeweave.bulk_final', 'off', true);
