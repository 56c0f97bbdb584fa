-- Pausing a task type or a pipeline (issue 14). POST /api/tasks/{id}/pause sets tasks.paused_at
-- and POST /api/pipelines/{id}/pause sets pipelines.paused_at; /resume clears them. Paused work
-- is still accepted (enqueued, triggered, retried) and waits, pending, until it is resumed, when
-- the claim takes it in priority order like any other. Attempts already dispatched run to their
-- end. Registration leaves both columns as they are.

-- The claim passes over the runs of a paused task.
ALTER TABLE tasks ADD COLUMN paused_at timestamptz;

-- A paused pipeline's pending nodes are parked: their available_at moves to the far future
-- (parked_available_at keeps the time it was), so that they sit after every ready run in the
-- claim's index range and cost a claim nothing, as delayed runs do. The trigger below parks
-- every node that becomes pending while its pipeline is paused, whichever statement makes it
-- so (a trigger, an advance, a retry, a DLQ retry); the pause parks the nodes pending already,
-- and the resume puts each back at its time. The claim also skips the nodes of a paused
-- pipeline, so one that a transaction running across the pause left unparked still waits. A
-- node leaving pending is unparked on the way (its parked time is forgotten).
ALTER TABLE pipelines ADD COLUMN paused_at timestamptz;
ALTER TABLE task_runs ADD COLUMN parked_available_at timestamptz;

CREATE FUNCTION park_paused_pipeline_node() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'pending' THEN
        -- The node left pending (claimed, cancelled, reopened to waiting): it is parked no more.
        IF NEW.available_at = '9999-01-01 00:00:00+00' THEN
            NEW.available_at := NEW.parked_available_at;
        END IF;
        NEW.parked_available_at := NULL;
        RETURN NEW;
    END IF;
    IF NEW.available_at = '9999-01-01 00:00:00+00' THEN
        RETURN NEW; -- parked already
    END IF;
    NEW.parked_available_at := NULL;
    -- The share lock on a paused pipeline's row makes a resume wait until this transaction
    -- ends, so that the resume's unpark sees this node; a resume that committed first shows
    -- the pipeline not paused here.
    PERFORM 1 FROM pipeline_runs pr JOIN pipelines p ON p.id = pr.pipeline_id
    WHERE pr.id = NEW.pipeline_run_id AND p.paused_at IS NOT NULL
    FOR SHARE OF p;
    IF FOUND THEN
        NEW.parked_available_at := NEW.available_at;
        NEW.available_at := '9999-01-01 00:00:00+00';
    END IF;
    RETURN NEW;
END;
$$;

-- Only rows that are (or become) pending nodes of a pipeline run, or that were parked, call the
-- function: claims, completions and standalone runs do not.
CREATE TRIGGER task_runs_park_paused BEFORE INSERT OR UPDATE OF status, available_at ON task_runs
    FOR EACH ROW WHEN (NEW.pipeline_run_id IS NOT NULL AND (NEW.status = 'pending' OR NEW.parked_available_at IS NOT NULL))
    EXECUTE FUNCTION park_paused_pipeline_node();

-- The parked nodes of a pipeline's runs, which its resume puts back.
CREATE INDEX task_runs_parked ON task_runs (pipeline_run_id) WHERE parked_available_at IS NOT NULL;

-- The pipelines paused now: the claim reads whether there are any once per claim.
CREATE INDEX pipelines_paused ON pipelines (id) WHERE paused_at IS NOT NULL;
