-- Schedules (migration 010, engine/schedules.go).

-- name: GetSchedule :one
SELECT * FROM schedules WHERE id = sqlc.arg('id');

-- name: ListSchedules :many
-- Schedules in id order after the cursor (after ''), at most max.
SELECT * FROM schedules WHERE id > sqlc.arg('after') ORDER BY id LIMIT sqlc.arg('max')::int;

-- name: LockSchedule :one
-- The schedule's row, locked for a PUT that replaces it.
SELECT * FROM schedules WHERE id = sqlc.arg('id') FOR UPDATE;

-- name: UpsertSchedule :one
-- Creates or replaces schedule id. created_at and the counters of a replaced schedule stay.
INSERT INTO schedules (id, cron, timezone, task_id, pipeline_id, input, overlap, catch_up, catch_up_limit, enabled, next_fire_at)
VALUES (sqlc.arg('id'), sqlc.arg('cron'), sqlc.arg('timezone'), sqlc.narg('task_id'), sqlc.narg('pipeline_id'), sqlc.arg('input'),
        sqlc.arg('overlap'), sqlc.arg('catch_up'), sqlc.arg('catch_up_limit'), sqlc.arg('enabled'), sqlc.narg('next_fire_at'))
ON CONFLICT (id) DO UPDATE SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, task_id = EXCLUDED.task_id,
    pipeline_id = EXCLUDED.pipeline_id, input = EXCLUDED.input, overlap = EXCLUDED.overlap, catch_up = EXCLUDED.catch_up,
    catch_up_limit = EXCLUDED.catch_up_limit, enabled = EXCLUDED.enabled, next_fire_at = EXCLUDED.next_fire_at, updated_at = now()
RETURNING *;

-- name: DeleteSchedule :execrows
DELETE FROM schedules WHERE id = sqlc.arg('id');

-- name: DueSchedules :many
-- Enabled schedules whose next slot is due at now (the database clock unless set), soonest
-- first, at most max, with the time they were read at.
SELECT s.*, n.now::timestamptz AS read_at
FROM (SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS now) n
JOIN schedules s ON s.next_fire_at <= n.now
ORDER BY s.next_fire_at LIMIT sqlc.arg('max')::int;

-- name: NextScheduleWait :one
-- How many schedules are enabled and how long, in ms rounded up, until the soonest slot of any
-- (0 or negative: due already; 0 when none is enabled).
SELECT count(next_fire_at) AS enabled,
    coalesce(ceil(extract(epoch FROM min(next_fire_at) - coalesce(sqlc.narg('now')::timestamptz, clock_timestamp())) * 1000)::bigint, 0)::bigint AS wait_ms
FROM schedules WHERE next_fire_at IS NOT NULL;

-- name: TakeScheduleSlot :one
-- Locks schedule id for the slot it is about to handle: only while its next slot is still
-- slot_at (no other transaction handled it, no PUT moved it) and no other transaction holds it.
-- No row: the slot is another's, or gone.
SELECT id FROM schedules WHERE id = sqlc.arg('id') AND next_fire_at = sqlc.arg('slot_at')
FOR UPDATE SKIP LOCKED;

-- name: RecordScheduleFire :execrows
-- Records how slot slot_at of schedule id was handled; 0 rows: it was handled already.
INSERT INTO schedule_fires (schedule_id, slot_at, outcome, run_id, error)
VALUES (sqlc.arg('id'), sqlc.arg('slot_at'), sqlc.arg('outcome'), sqlc.narg('run_id'), sqlc.narg('error'))
ON CONFLICT DO NOTHING;

-- name: AdvanceSchedule :exec
-- Moves schedule id (taken with TakeScheduleSlot) past a handled slot: next_fire_at to the next
-- slot to handle, the run the slot made (if any), and the slots passed over before it.
UPDATE schedules SET next_fire_at = sqlc.arg('next_fire_at'),
    last_run_id = coalesce(sqlc.narg('run_id'), last_run_id),
    last_slot_at = CASE WHEN sqlc.narg('run_id')::text IS NULL THEN last_slot_at ELSE sqlc.arg('slot_at') END,
    last_fired_at = CASE WHEN sqlc.narg('run_id')::text IS NULL THEN last_fired_at ELSE clock_timestamp() END,
    missed_slots = missed_slots + sqlc.arg('missed')::bigint,
    last_missed_at = coalesce(sqlc.narg('last_missed_at'), last_missed_at)
WHERE id = sqlc.arg('id');

-- name: MarkRunScheduled :exec
-- Names the schedule and slot that made standalone run id.
UPDATE task_runs SET schedule_id = sqlc.arg('schedule_id'), schedule_slot = sqlc.arg('slot_at') WHERE id = sqlc.arg('id');

-- name: MarkPipelineRunScheduled :exec
-- Names the schedule and slot that made pipeline run id.
UPDATE pipeline_runs SET schedule_id = sqlc.arg('schedule_id'), schedule_slot = sqlc.arg('slot_at') WHERE id = sqlc.arg('id');

-- name: ScheduleRunActive :one
-- Whether run run_id (a standalone run or a pipeline run) has not ended.
SELECT EXISTS (SELECT 1 FROM task_runs t WHERE t.id = sqlc.arg('run_id') AND status IN ('waiting', 'pending', 'dispatching', 'running'))
    OR EXISTS (SELECT 1 FROM pipeline_runs p WHERE p.id = sqlc.arg('run_id') AND p.status = 'running') AS active;

-- name: ScheduleFires :many
-- The latest handled slots of schedule id, newest first, at most max.
SELECT slot_at, outcome, run_id, error, fired_at FROM schedule_fires
WHERE schedule_id = sqlc.arg('id') ORDER BY slot_at DESC LIMIT sqlc.arg('max')::int;

-- name: PurgeScheduleFires :execrows
-- Records of slots handled more than older_than_ms ms ago, at most max.
DELETE FROM schedule_fires WHERE (schedule_id, slot_at) IN (
    SELECT schedule_id, slot_at FROM schedule_fires
    WHERE fired_at < coalesce(sqlc.narg('now')::timestamptz, now()) - sqlc.arg('older_than_ms')::bigint * interval '1 millisecond'
    ORDER BY fired_at LIMIT sqlc.arg('max')::int);
