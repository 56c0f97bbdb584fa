-- PipeWeave schema, version 1. Every object lives in the pipeweave schema so that
-- `pipeweave db reset` can drop it whole without touching anything else in the database.

CREATE TABLE services (
    id            text PRIMARY KEY,
    version       text NOT NULL,
    base_url      text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Task ids are global: /api/tasks/{id}/history and pipeline edges name a task by id alone.
CREATE TABLE tasks (
    id                      text PRIMARY KEY,
    service_id              text NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    code_hash               text NOT NULL,
    code_version            integer NOT NULL DEFAULT 1,
    allowed_next            text[] NOT NULL DEFAULT '{}',
    timeout_seconds         integer NOT NULL CHECK (timeout_seconds > 0),
    retries                 integer NOT NULL CHECK (retries >= 0),
    retry_backoff           text NOT NULL CHECK (retry_backoff IN ('fixed', 'exponential')),
    retry_delay_ms          bigint NOT NULL CHECK (retry_delay_ms >= 0),
    max_retry_delay_ms      bigint NOT NULL CHECK (max_retry_delay_ms >= 0),
    heartbeat_interval_ms   bigint NOT NULL CHECK (heartbeat_interval_ms > 0),
    concurrency             integer NOT NULL DEFAULT 0 CHECK (concurrency >= 0),
    priority                integer NOT NULL DEFAULT 100 CHECK (priority >= 0),
    idempotency_ttl_seconds integer NOT NULL CHECK (idempotency_ttl_seconds >= 0),
    description             text NOT NULL DEFAULT '',
    input_schema            jsonb,
    -- Set when a later service version no longer lists the task (an orphan).
    removed_in_version      text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_service ON tasks (service_id);

CREATE TABLE task_code_history (
    id              bigserial PRIMARY KEY,
    task_id         text NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    code_version    integer NOT NULL,
    code_hash       text NOT NULL,
    service_version text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, code_version)
);

CREATE TABLE pipelines (
    id           text PRIMARY KEY,
    service_id   text REFERENCES services (id) ON DELETE SET NULL,
    entry_tasks  text[] NOT NULL DEFAULT '{}',
    failure_mode text NOT NULL DEFAULT 'fail-fast'
        CHECK (failure_mode IN ('fail-fast', 'continue', 'partial-merge')),
    implicit     boolean NOT NULL DEFAULT false,
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pipeline_runs (
    id           text PRIMARY KEY,
    pipeline_id  text NOT NULL,
    status       text NOT NULL
        CHECK (status IN ('running', 'completed', 'failed', 'partial', 'cancelled')),
    failure_mode text NOT NULL
        CHECK (failure_mode IN ('fail-fast', 'continue', 'partial-merge')),
    priority     integer NOT NULL,
    metadata     jsonb,
    input_path   text NOT NULL,
    snapshot     jsonb NOT NULL,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX pipeline_runs_pipeline ON pipeline_runs (pipeline_id, id DESC);
CREATE INDEX pipeline_runs_finished ON pipeline_runs (completed_at) WHERE status <> 'running';

CREATE TABLE task_runs (
    id                    text PRIMARY KEY,
    task_id               text NOT NULL,
    pipeline_run_id       text REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    status                text NOT NULL CHECK (status IN ('waiting', 'pending', 'dispatching', 'running',
                                                           'completed', 'failed', 'cancelled', 'skipped')),
    attempt               integer NOT NULL DEFAULT 1,
    priority              integer NOT NULL CHECK (priority >= 0),
    -- Fencing counter: incremented by every claim and by every attempt the orchestrator ends
    -- itself (sweep, failed dispatch), so calls carrying an older lease are refused.
    lease                 bigint NOT NULL DEFAULT 0,
    available_at          timestamptz NOT NULL DEFAULT now(),
    -- When the sweep acts on this run: the dispatch lease expiry while dispatching, the earlier of
    -- the heartbeat deadline and the hard timeout while running.
    deadline              timestamptz,
    timeout_at            timestamptz,
    heartbeat_interval_ms bigint,
    input_path            text NOT NULL,
    output_path           text,
    output_size           bigint,
    assets                jsonb,
    logs_path             text,
    selected_next         text[],
    error                 text,
    error_code            text,
    previous_attempts     jsonb NOT NULL DEFAULT '[]',
    code_version          integer NOT NULL,
    code_hash             text NOT NULL,
    metadata              jsonb,
    idempotency_key       text,
    progress              integer,
    progress_message      text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    completed_at          timestamptz
);
-- Claim path: per task, the ready runs in priority order. Partial, so it tracks live work only.
CREATE INDEX task_runs_pending ON task_runs (task_id, priority, available_at, id) WHERE status = 'pending';
-- Concurrency counts and the sweep: runs in flight.
CREATE INDEX task_runs_inflight ON task_runs (task_id) WHERE status IN ('dispatching', 'running');
CREATE INDEX task_runs_deadline ON task_runs (deadline) WHERE status IN ('dispatching', 'running');
-- Queue statistics and listings of live work (ids sort by creation time). Listings of final
-- states walk the primary key backwards, newest first.
CREATE INDEX task_runs_live ON task_runs (status, id) WHERE status IN ('waiting', 'pending', 'dispatching', 'running');
CREATE INDEX task_runs_pipeline_run ON task_runs (pipeline_run_id) WHERE pipeline_run_id IS NOT NULL;
CREATE INDEX task_runs_task_id ON task_runs (task_id, id);
-- Retention: finished standalone runs by completion time.
CREATE INDEX task_runs_finished ON task_runs (completed_at)
    WHERE pipeline_run_id IS NULL AND status IN ('completed', 'failed', 'cancelled', 'skipped');

-- Runs that reached a final state, counted so that /api/queue/status never scans history.
-- Every change appends a delta (inserts never wait on each other, where one counter row would
-- serialise every commit); the sweep folds the deltas into run_status_counts.
CREATE TABLE run_status_counts (
    status text PRIMARY KEY,
    n      bigint NOT NULL DEFAULT 0
);

CREATE TABLE run_status_deltas (
    status text NOT NULL,
    n      integer NOT NULL
);

CREATE FUNCTION count_final_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status IN ('completed', 'failed', 'cancelled', 'skipped')
       AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
        INSERT INTO run_status_deltas (status, n) VALUES (NEW.status, 1);
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN ('completed', 'failed', 'cancelled', 'skipped')
       AND (TG_OP = 'DELETE' OR OLD.status IS DISTINCT FROM NEW.status) THEN
        INSERT INTO run_status_deltas (status, n) VALUES (OLD.status, -1);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER task_runs_count_final
    AFTER INSERT OR UPDATE OF status OR DELETE ON task_runs
    FOR EACH ROW EXECUTE FUNCTION count_final_status();

CREATE TABLE dlq (
    id              text PRIMARY KEY,
    task_run_id     text NOT NULL UNIQUE,
    task_id         text NOT NULL,
    pipeline_run_id text,
    input_path      text NOT NULL,
    error           text,
    error_code      text,
    attempts        jsonb NOT NULL,
    code_version    integer NOT NULL,
    code_hash       text NOT NULL,
    priority        integer NOT NULL,
    metadata        jsonb,
    failed_at       timestamptz NOT NULL DEFAULT now(),
    retried_at      timestamptz,
    retry_run_id    text
);
CREATE INDEX dlq_failed_at ON dlq (failed_at);
CREATE INDEX dlq_task ON dlq (task_id, id);

CREATE TABLE idempotency_keys (
    task_id    text NOT NULL,
    key        text NOT NULL,
    run_id     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (task_id, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);

-- Retry delay in milliseconds before the attempt after `attempt`:
-- fixed = delay; exponential = min(delay * 2^(attempt-1), max). A jitter of ±20% spreads a burst
-- of failures, and the result never exceeds max.
CREATE FUNCTION retry_delay_ms(backoff text, delay_ms bigint, max_delay_ms bigint, attempt integer)
RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT least(
        round(
            (CASE WHEN backoff = 'exponential'
                  THEN least(delay_ms::numeric * power(2::numeric, greatest(attempt - 1, 0)), max_delay_ms::numeric)
                  ELSE least(delay_ms::numeric, max_delay_ms::numeric) END)
            * (0.8 + 0.4 * random()::numeric)
        ),
        max_delay_ms::numeric
    )::bigint
$$;
