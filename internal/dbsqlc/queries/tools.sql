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
