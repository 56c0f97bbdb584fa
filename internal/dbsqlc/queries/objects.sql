-- Inline payloads (migration 008): the stored objects that live in PostgreSQL.

-- name: InlineObject :one
-- The inline body stored under path, if any; run_id is the id the path names (its second
-- segment). First the row of that id (a run's own input or output, a pipeline run's input), then
-- the DLQ entry's copy of a failed run's input, then a row that holds the payload under another
-- run's path (a DLQ retry run, a run that reused a cached result) through the partial indexes
-- task_runs_inline_*_elsewhere. Every copy holds the same bytes; the first found is returned.
SELECT body FROM (
    SELECT tr.input AS body FROM task_runs tr
    WHERE tr.id = sqlc.arg('run_id')::text AND tr.input_path = sqlc.arg('path')::text AND tr.input IS NOT NULL
    UNION ALL
    SELECT tr.output FROM task_runs tr
    WHERE tr.id = sqlc.arg('run_id')::text AND tr.output_path = sqlc.arg('path')::text AND tr.output IS NOT NULL
    UNION ALL
    SELECT pr.input FROM pipeline_runs pr
    WHERE pr.id = sqlc.arg('run_id')::text AND pr.input_path = sqlc.arg('path')::text AND pr.input IS NOT NULL
    UNION ALL
    SELECT d.input FROM dlq d
    WHERE d.task_run_id = sqlc.arg('run_id')::text AND d.input_path = sqlc.arg('path')::text AND d.input IS NOT NULL
    UNION ALL
    (SELECT tr.input FROM task_runs tr
     WHERE tr.input_path = sqlc.arg('path')::text AND tr.input IS NOT NULL
       AND tr.input_path <> 'standalone/' || tr.id || '/input.json'
     LIMIT 1)
    UNION ALL
    (SELECT tr.output FROM task_runs tr
     WHERE tr.output_path = sqlc.arg('path')::text AND tr.output IS NOT NULL
       AND tr.output_path <> 'runs/' || tr.id || '/output.json'
     LIMIT 1)
) found
LIMIT 1;
