-- Input schemas of tasks.

-- name: TaskInputSchemas :many
-- The schemas and their hash of the tasks among ids (orphaned ones included).
SELECT id, input_schema, input_json_schema, coalesce(input_schema_hash, '')
FROM tasks WHERE id = ANY(sqlc.arg('ids')::text[]);
