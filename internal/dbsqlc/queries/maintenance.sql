-- Maintenance mode: the singleton row of orchestrator_state (migration 004). Every statement
-- that changes the mode runs after pg_advisory_xact_lock(claim lock) in the same transaction.

-- name: MaintenanceMode :one
SELECT mode, mode_changed_at FROM orchestrator_state WHERE id = 'singleton';

-- name: MaintenanceLockState :one
-- The mode, its change time and the runs in flight (dispatching or running), read under the
-- claim lock: no claim can add to them meanwhile.
SELECT s.mode, s.mode_changed_at,
       (SELECT count(*) FROM task_runs WHERE status IN ('dispatching', 'running'))::bigint AS in_flight
FROM orchestrator_state s WHERE s.id = 'singleton'
FOR UPDATE;

-- name: MaintenanceSetMode :exec
UPDATE orchestrator_state SET mode = sqlc.arg('mode'), mode_changed_at = now()
WHERE id = 'singleton'
RETURNING mode, mode_changed_at;

-- name: MaintenanceSettle :one
-- waiting_for_maintenance becomes maintenance once nothing is in flight.
UPDATE orchestrator_state SET mode = 'maintenance', mode_changed_at = now()
WHERE id = 'singleton' AND mode = 'waiting_for_maintenance'
  AND NOT EXISTS (SELECT 1 FROM task_runs WHERE status IN ('dispatching', 'running'))
RETURNING mode, mode_changed_at;

-- name: MaintenanceStatus :one
-- The mode with the counts GET /api/maintenance reports, over the partial index of live runs.
SELECT s.mode, s.mode_changed_at,
       (SELECT count(*) FROM task_runs WHERE status = 'pending')::bigint AS pending,
       (SELECT count(*) FROM task_runs WHERE status IN ('dispatching', 'running'))::bigint AS in_flight
FROM orchestrator_state s WHERE s.id = 'singleton';
