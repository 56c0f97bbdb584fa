-- Schedules (issue 14): a schedule fires a standalone task or a pipeline with a fixed input on a
-- cron expression in a named time zone. next_fire_at is the next slot not yet handled (NULL while
-- the schedule is disabled); the standalone loop and the process function fire the slots that are
-- due. Each slot is handled once across every instance: the transaction that fires it locks the
-- schedule's row, checks that next_fire_at is still that slot, inserts the slot's row in
-- schedule_fires (whose key is the schedule and the slot) and creates the run, all or nothing.
CREATE TABLE schedules (
    id             text PRIMARY KEY,
    cron           text NOT NULL,
    timezone       text NOT NULL,
    task_id        text,
    pipeline_id    text,
    input          json NOT NULL,
    overlap        text NOT NULL,
    catch_up       text NOT NULL,
    catch_up_limit integer NOT NULL,
    enabled        boolean NOT NULL,
    next_fire_at   timestamptz,
    -- The run the last fired slot made: the one overlap policies look at.
    last_run_id    text,
    last_slot_at   timestamptz,
    last_fired_at  timestamptz,
    -- Due slots passed over by the catch-up policy, and the latest of them.
    missed_slots   bigint NOT NULL DEFAULT 0,
    last_missed_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((task_id IS NULL) <> (pipeline_id IS NULL)),
    CHECK (overlap IN ('allow', 'skip', 'cancel-previous')),
    CHECK (catch_up IN ('none', 'latest', 'all')),
    CHECK (enabled = (next_fire_at IS NOT NULL))
);

-- The due schedules, soonest first.
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;

-- One row per handled slot: fired (run_id names the run) or skipped (overlap: the previous run
-- was still active), or failed (the run could not be made, e.g. the task was removed; error says
-- why). Purged with the finished runs after DLQ_RETENTION_DAYS.
CREATE TABLE schedule_fires (
    schedule_id text NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    slot_at     timestamptz NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('fired', 'skipped', 'failed')),
    run_id      text,
    error       text,
    fired_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (schedule_id, slot_at)
);

CREATE INDEX schedule_fires_fired_at ON schedule_fires (fired_at);

-- The runs a schedule made name it and their slot.
ALTER TABLE task_runs ADD COLUMN schedule_id text, ADD COLUMN schedule_slot timestamptz;
ALTER TABLE pipeline_runs ADD COLUMN schedule_id text, ADD COLUMN schedule_slot timestamptz;
