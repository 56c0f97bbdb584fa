-- Input schemas (issue 9). A task may register upstream's field-list inputSchema (already in
-- input_schema) and a standard JSON Schema (input_json_schema). Registration compiles both and
-- records a hash of the pair: the enqueue path reads only the hash with the task row and keeps
-- the compiled validators in memory under it. NULL hash: the task has no schema.

ALTER TABLE tasks ADD COLUMN input_json_schema jsonb;
ALTER TABLE tasks ADD COLUMN input_schema_hash text;

-- Schemas registered before this migration were stored but never compiled: give them a hash so
-- that they are validated from now on. One that does not compile (the Go SDK once documented
-- inputSchema as a JSON Schema) is logged once per instance and not validated until its task
-- registers again, when registration refuses it.
UPDATE tasks SET input_schema_hash = 'pre-006:' || md5(input_schema::text)
WHERE input_schema IS NOT NULL AND input_schema <> 'null'::jsonb;
