-- Maintenance mode: the singleton row of orchestrator_state (migration 004). Every statement
-- that changes the mode runs after pg_advisory_xact_lock(claim lock) in the same transaction.

-- name: maintenance_mode
SELECT mode, mode_changed_at FROM orchestrator_state WHERE id = 'singleton';

-- name: maintenance_lock_state
-- The mode, its change time and the runs in flight (dispatching or running), read under the
-- claim lock: no claim can add to them meanwhile.
SELECT s.mode, s.mode_changed_at,
       (SELECT count(*) FROM task_runs WHERE status IN ('dispatching', 'running'))::bigint
FROM orchestrator_state s WHERE s.id = 'singleton'
FOR UPDATE;

-- name: maintenance_set_mode
UPDATE orchestrator_state SET mode = $1, mode_changed_at = now()
WHERE id = 'singleton'
RETURNING mode, mode_changed_at;

-- name: maintenance_settle
-- waiting_for_maintenance becomes maintenance once nothing is in flight.
UPDATE orchestrator_state SET mode = 'maintenance', mode_changed_at = now()
WHERE id = 'singleton' AND mode = 'waiting_for_maintenance'
  AND NOT EXISTS (SELECT 1 FROM task_runs WHERE status IN ('dispatching', 'running'))
RETURNING mode, mode_changed_at;

-- name: maintenance_status
-- The mode with the counts GET /api/maintenance reports, over the partial index of live runs.
SELECT s.mode, s.mode_changed_at,
       (SELECT count(*) FROM task_runs WHERE status = 'pending')::bigint,
       (SELECT count(*) FROM task_runs WHERE status IN ('dispatching', 'running'))::bigint
FROM orchestrator_state s WHERE s.id = 'singleton';

-- name: maintenance_notify
SELECT pg_notify('pipeweave_ready', '');
