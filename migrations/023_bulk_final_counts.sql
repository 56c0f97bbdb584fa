-- A group commit's completions counted and announced once per statement instead of once per
-- row.
--
-- Every standalone run that completes called two plpgsql row triggers: count_final_status, which
-- inserts a delta row into run_status_deltas, and webhook_task_run_event, which queries webhooks
-- (webhook_wanted) for the one event. In `pipeweave bench` they were 4.4 % of the machine's
-- CPU (README, Performance). CompleteStandalone, the statement of a group commit, now does both
-- for its rows itself (one delta row per statement, one insert of deliveries), but only while
-- the transaction's setting pipeweave.bulk_final is 'on', and the two triggers skip rows while
-- it is: whether the setting is on or not, every completion is counted and announced exactly
-- once. The callers set it around that statement alone (internal/dbsqlc/pipelined.go); any
-- other statement, and CompleteStandalone sent without it, go through the triggers as before.

-- The data of a task_run.* event, shared by the trigger and CompleteStandalone.
CREATE FUNCTION webhook_task_run_data(id text, task_id text, status text, attempt int, error text, error_code text,
                                      metadata jsonb, schedule_id text, schedule_slot timestamptz,
                                      created_at timestamptz, completed_at timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'runId', id, 'taskId', task_id, 'status', status, 'attempt', attempt,
        'error', error, 'errorCode', error_code, 'metadata', metadata,
        'scheduleId', schedule_id, 'scheduleSlot', schedule_slot,
        'createdAt', created_at, 'completedAt', completed_at))
$$;

CREATE OR REPLACE FUNCTION webhook_task_run_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev text := 'task_run.' || NEW.status;
BEGIN
    IF NOT webhook_wanted(ev) THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_emit(ev, webhook_task_run_data(NEW.id, NEW.task_id, NEW.status, NEW.attempt, NEW.error, NEW.error_code,
        NEW.metadata, NEW.schedule_id, NEW.schedule_slot, NEW.created_at, NEW.completed_at));
    RETURN NULL;
END;
$$;

-- The WHEN clauses as before, with the setting tested last (AND stops at the first false).
DROP TRIGGER task_runs_count_final_update ON task_runs;
CREATE TRIGGER task_runs_count_final_update AFTER UPDATE OF status ON task_runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       AND (OLD.status IN ('completed', 'failed', 'cancelled', 'skipped')
                            OR NEW.status IN ('completed', 'failed', 'cancelled', 'skipped'))
                       AND current_setting('pipeweave.bulk_final', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION count_final_status();

DROP TRIGGER task_runs_webhook ON task_runs;
CREATE TRIGGER task_runs_webhook AFTER UPDATE OF status ON task_runs
    FOR EACH ROW WHEN (NEW.pipeline_run_id IS NULL AND NEW.status IN ('completed', 'failed', 'cancelled')
                       AND OLD.status IS DISTINCT FROM NEW.status
                       AND current_setting('pipeweave.bulk_final', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION webhook_task_run_event();
