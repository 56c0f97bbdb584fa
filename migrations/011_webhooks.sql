-- Signed webhooks (issue 14). A webhook is a URL, the events it wants and its Standard Webhooks
-- signing secret. Each event a webhook wants becomes one row of webhook_deliveries (an outbox),
-- inserted by the statement that makes the event happen, in its transaction: the triggers below
-- on task_runs, pipeline_runs and dlq, and webhook_emit for the events other code raises
-- (schedule.missed). The orchestrator's loop and `process` send due deliveries, claimed with
-- FOR UPDATE SKIP LOCKED, and record each attempt.

CREATE TABLE webhooks (
    id         text PRIMARY KEY,
    url        text NOT NULL,
    events     text[] NOT NULL,
    -- whsec_<base64 of 24 to 64 bytes>; never shown again after the PUT that generated it.
    secret     text NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    -- The webhook-id header: the same on every attempt, so that receivers dedupe on it.
    id               text PRIMARY KEY,
    webhook_id       text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event            text NOT NULL,
    -- The exact body sent: {"type", "timestamp", "data"}.
    payload          text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    -- Attempts started (a claim counts one); the claim also moves next_attempt_at past the
    -- request's time limit, so that no other instance takes the delivery while it is sent,
    -- and an instance that dies mid-send leaves it due again then (at least once).
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- Fencing: incremented by every claim; an attempt's result is recorded only under its lease.
    lease            bigint NOT NULL DEFAULT 0,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- When it was delivered or given up (dead): retention counts from here.
    finished_at      timestamptz
);
-- The sender's claim: due pending deliveries.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
-- The delivery log of one webhook, newest first (ids sort by creation time).
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id DESC);
-- Retention: finished deliveries by finishing time.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE status <> 'pending';

-- A delivery id: msg_ and 26 lower-case hex digits, time-ordered like the other ids (48 bits of
-- milliseconds, then 56 random bits), so that the log sorts by creation time and an id is a
-- pagination cursor.
CREATE FUNCTION webhook_delivery_id() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT 'msg_' || lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
        || substr(md5(gen_random_uuid()::text), 1, 14)
$$;

-- webhook_emit queues one delivery of event, with data as the payload's data, for each enabled
-- webhook that wants event, in the caller's transaction, and returns how many. It is the one
-- way events enter the outbox: the triggers below call it, and so may other code (the
-- schedules' schedule.missed: SELECT webhook_emit('schedule.missed', jsonb_build_object(...))).
CREATE FUNCTION webhook_emit(event text, data jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO webhook_deliveries (id, webhook_id, event, payload)
    SELECT webhook_delivery_id(), w.id, event,
           jsonb_build_object('type', event,
                              'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                              'data', data)::text
    FROM webhooks w
    WHERE w.enabled AND event = ANY (w.events)
    -- KEY SHARE: a concurrent DELETE of the webhook is waited for and the webhook skipped,
    -- instead of the delivery's foreign key check failing the caller's change with 23503.
    FOR KEY SHARE OF w;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- The cheap guard the triggers run first: whether any enabled webhook wants event. With no
-- webhooks it reads one empty table.
CREATE FUNCTION webhook_wanted(event text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM webhooks w WHERE w.enabled AND event = ANY (w.events))
$$;

-- task_run.completed|failed|cancelled: a standalone run (not a pipeline node) reached a final
-- status.
CREATE FUNCTION webhook_task_run_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev text := 'task_run.' || NEW.status;
BEGIN
    IF NOT webhook_wanted(ev) THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_emit(ev, jsonb_strip_nulls(jsonb_build_object(
        'runId', NEW.id, 'taskId', NEW.task_id, 'status', NEW.status, 'attempt', NEW.attempt,
        'error', NEW.error, 'errorCode', NEW.error_code, 'metadata', NEW.metadata,
        'scheduleId', NEW.schedule_id, 'scheduleSlot', NEW.schedule_slot,
        'createdAt', NEW.created_at, 'completedAt', NEW.completed_at)));
    RETURN NULL;
END;
$$;

-- Only standalone runs whose status changes to a final one call the function.
CREATE TRIGGER task_runs_webhook AFTER UPDATE OF status ON task_runs
    FOR EACH ROW WHEN (NEW.pipeline_run_id IS NULL AND NEW.status IN ('completed', 'failed', 'cancelled')
                       AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION webhook_task_run_event();

-- pipeline_run.completed|failed|partial|cancelled: a pipeline run ended.
CREATE FUNCTION webhook_pipeline_run_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev text := 'pipeline_run.' || NEW.status;
BEGIN
    IF NOT webhook_wanted(ev) THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_emit(ev, jsonb_strip_nulls(jsonb_build_object(
        'pipelineRunId', NEW.id, 'pipelineId', NEW.pipeline_id, 'status', NEW.status,
        'error', NEW.error, 'metadata', NEW.metadata,
        'scheduleId', NEW.schedule_id, 'scheduleSlot', NEW.schedule_slot,
        'createdAt', NEW.created_at, 'completedAt', NEW.completed_at)));
    RETURN NULL;
END;
$$;

CREATE TRIGGER pipeline_runs_webhook AFTER UPDATE OF status ON pipeline_runs
    FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running')
    EXECUTE FUNCTION webhook_pipeline_run_event();

-- dlq.added: a run (standalone or a pipeline node) failed for good and entered the DLQ.
CREATE FUNCTION webhook_dlq_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT webhook_wanted('dlq.added') THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_emit('dlq.added', jsonb_strip_nulls(jsonb_build_object(
        'dlqId', NEW.id, 'runId', NEW.task_run_id, 'taskId', NEW.task_id,
        'pipelineRunId', NEW.pipeline_run_id, 'error', NEW.error, 'errorCode', NEW.error_code,
        'metadata', NEW.metadata, 'failedAt', NEW.failed_at)));
    RETURN NULL;
END;
$$;

CREATE TRIGGER dlq_webhook AFTER INSERT ON dlq
    FOR EACH ROW EXECUTE FUNCTION webhook_dlq_event();
