-- Input schemas of tasks.

-- name: task_input_schemas
-- The schemas and their hash of the tasks among $1 (orphaned ones included).
SELECT id, input_schema, input_json_schema, coalesce(input_schema_hash, '')
FROM tasks WHERE id = ANY($1::text[]);
