-- Read-only queries of the tools (the benchmark, the cold-start measurement).

-- name: DurabilitySettings :one
SELECT current_setting('fsync')::text AS fsync, current_setting('synchronous_commit')::text AS synchronous_commit;

-- name: ServerVersion :one
SELECT current_setting('server_version')::text;

-- name: TaskRunLatencies :many
-- Creation→completion seconds of the completed task runs among ids, by the database clock.
SELECT extract(epoch FROM completed_at - created_at)::float8
FROM task_runs WHERE id = ANY(sqlc.arg('ids')::text[]) AND status = 'completed';

-- name: PipelineRunLatencies :many
-- Creation→completion seconds of the completed pipeline runs among ids, by the database clock.
SELECT extract(epoch FROM completed_at - created_at)::float8
FROM pipeline_runs WHERE id = ANY(sqlc.arg('ids')::text[]) AND status = 'completed';

-- name: CountReadyRuns :one
-- How many of the task runs among ids are pending and ready to be claimed.
SELECT count(*) FROM task_runs
WHERE id = ANY(sqlc.arg('ids')::text[]) AND status = 'pending' AND available_at <= now();

-- name: CountCompletedRuns :one
-- How many of the task runs among ids completed.
SELECT count(*) FROM task_runs WHERE id = ANY(sqlc.arg('ids')::text[]) AND status = 'completed';

-- name: ScheduleLags :many
-- For each fired schedule slot (pipeweave bench --schedules): seconds from the slot to the run's
-- creation (the fire) and to its completion (-1 while not completed), by the database clock.
SELECT extract(epoch FROM f.fired_at - f.slot_at)::float8 AS fire_s,
    coalesce(extract(epoch FROM r.completed_at - f.slot_at)::float8, -1)::float8 AS completed_s
FROM schedule_fires f JOIN task_runs r ON r.id = f.run_id
WHERE f.outcome = 'fired';
