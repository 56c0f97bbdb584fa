-- Input schemas (issue 9). A task may register upstream's field-list inputSchema (already in
-- input_schema) and a standard JSON Schema (input_json_schema). Registration compiles both and
-- records a hash of the pair: the enqueue path reads only the hash with the task row and keeps
-- the compiled validators in memory under it. NULL hash: the task has no schema (tasks
-- registered before this migration are validated from their next registration on).

ALTER TABLE tasks ADD COLUMN input_json_schema jsonb;
ALTER TABLE tasks ADD COLUMN input_schema_hash text;
