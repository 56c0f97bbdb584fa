-- Deadlines per pipeline run (issue 15, item 3). A pipeline declares timeoutMs
-- (pipelines.timeout_ms, NULL = none) and a trigger may override it; the trigger stores the
-- run's timeout (pipeline_runs.timeout_ms) and its deadline (pipeline_runs.deadline = the
-- trigger's time + timeout_ms). The sweep fails running runs whose deadline passed with
-- error_code PIPELINE_TIMEOUT and cancels their open nodes. Runs without a timeout keep NULL
-- and the index below does not hold them.
ALTER TABLE pipelines ADD COLUMN timeout_ms bigint CHECK (timeout_ms > 0);
ALTER TABLE pipeline_runs ADD COLUMN timeout_ms bigint CHECK (timeout_ms > 0);
ALTER TABLE pipeline_runs ADD COLUMN deadline timestamptz;
-- Why a run ended when it says (PIPELINE_TIMEOUT; NULL otherwise).
ALTER TABLE pipeline_runs ADD COLUMN error_code text;

-- The sweep's path: running runs with a deadline, by deadline.
CREATE INDEX pipeline_runs_deadline ON pipeline_runs (deadline) WHERE status = 'running' AND deadline IS NOT NULL;

-- pipeline_run.* webhook events carry the run's error code (as task_run.* ones do) when it has one.
CREATE OR REPLACE FUNCTION webhook_pipeline_run_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev text := 'pipeline_run.' || NEW.status;
BEGIN
    IF NOT webhook_wanted(ev) THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_emit(ev, jsonb_strip_nulls(jsonb_build_object(
        'pipelineRunId', NEW.id, 'pipelineId', NEW.pipeline_id, 'status', NEW.status,
        'error', NEW.error, 'errorCode', NEW.error_code, 'metadata', NEW.metadata,
        'scheduleId', NEW.schedule_id, 'scheduleSlot', NEW.schedule_slot,
        'createdAt', NEW.created_at, 'completedAt', NEW.completed_at)));
    RETURN NULL;
END;
$$;
