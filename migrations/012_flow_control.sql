-- Flow control (issue 14, items 2 and 3): rate limits and concurrency per key.
--
-- Rate limits. A task registers rateLimit {limit, periodMs} (tasks.rate_limit and
-- tasks.rate_limit_period_ms) or names a shared limit, rateLimitKey (tasks.rate_limit_key, a row
-- of rate_limits that PUT /api/rate-limits/{key} writes). The claim enforces them with fixed
-- windows: the window of a limit is floor(now / period) × period (in epoch milliseconds), and
-- rate_limit_windows counts the runs claimed in it, one row per bucket ('task:' || task id for a
-- task's own limit, 'key:' || key for a named one). The claim reads and updates these rows under
-- the claim lock, so the count includes every instance's claims. Tasks without a limit never
-- touch them.
ALTER TABLE tasks ADD COLUMN rate_limit integer;
ALTER TABLE tasks ADD COLUMN rate_limit_period_ms bigint;
ALTER TABLE tasks ADD COLUMN rate_limit_key text;

CREATE TABLE rate_limits (
    key        text PRIMARY KEY,
    max_runs   integer NOT NULL CHECK (max_runs > 0),
    period_ms  bigint NOT NULL CHECK (period_ms > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The window a bucket is in (its start, epoch ms), how many runs were claimed in it, and the limit
-- and period it was counted under (what the claim reports as the next refill).
CREATE TABLE rate_limit_windows (
    bucket          text PRIMARY KEY,
    window_start_ms bigint NOT NULL,
    used            integer NOT NULL,
    max_runs        integer NOT NULL,
    period_ms       bigint NOT NULL
);

-- Concurrency per key. A task registers concurrencyKey (a JSON pointer into the input,
-- tasks.concurrency_key) and concurrencyPerKey (tasks.concurrency_per_key); an enqueue stores the
-- value the pointer selects in the new run's task_runs.concurrency_key (the value's JSON text, at
-- most 256 bytes; '' when the input has no such value: such runs are limited by the task's
-- concurrency only). Runs of tasks without a key keep NULL, and neither index below holds them.
ALTER TABLE tasks ADD COLUMN concurrency_key text;
ALTER TABLE tasks ADD COLUMN concurrency_per_key integer;
ALTER TABLE task_runs ADD COLUMN concurrency_key text;

-- The claim's path for keyed tasks: their pending runs by key (one index descent per key).
CREATE INDEX task_runs_pending_keyed ON task_runs (task_id, concurrency_key, priority, available_at, id)
    WHERE status = 'pending' AND concurrency_key IS NOT NULL;
-- Runs in flight per key.
CREATE INDEX task_runs_inflight_keyed ON task_runs (task_id, concurrency_key)
    WHERE status IN ('dispatching', 'running') AND concurrency_key IS NOT NULL;
