-- Small payloads live in PostgreSQL (issue 13, the claim-check pattern). An input or output of at
-- most INLINE_PAYLOAD_MAX_BYTES is kept, byte for byte, in a bytea column of the row that names
-- its path, in the transaction that writes the row, and nothing is written to object storage for
-- it. The paths stay what they are (standalone/{runId}/input.json, pipelines/{id}/input.json,
-- runs/{runId}/output.json): GET /api/storage/{path} resolves a path to the column that holds it
-- (InlineObject in internal/dbsqlc/queries/objects.sql) before it asks the storage backend. NULL:
-- the payload is in the storage backend at the row's path (larger payloads, runs made before
-- this migration or with the threshold 0). A purge deletes the rows, and the payloads with them.

-- A standalone run's input, and a DLQ retry run's copy of the input it re-runs.
ALTER TABLE task_runs ADD COLUMN input bytea;
-- A completed run's output; a run that reused a cached result (idempotency) holds a copy of the
-- output of the run it names.
ALTER TABLE task_runs ADD COLUMN output bytea;
-- A pipeline run's input, which every node of the run reads (task_runs.input stays NULL for them).
ALTER TABLE pipeline_runs ADD COLUMN input bytea;
-- A copy of the failed standalone run's inline input, so the entry lists and retries it after
-- the run itself is purged.
ALTER TABLE dlq ADD COLUMN input bytea;

-- The rows that hold an inline payload under another run's path: a DLQ retry run keeps its
-- input path standalone/{failed run}/input.json, and a run that reused a cached result names
-- runs/{source run}/output.json. GET /api/storage finds them here once the run whose id the path
-- names is purged. Every other row fails the predicate, so the hot path adds no index entry.
CREATE INDEX task_runs_inline_input_elsewhere ON task_runs (input_path)
    WHERE input IS NOT NULL AND input_path <> 'standalone/' || id || '/input.json';
CREATE INDEX task_runs_inline_output_elsewhere ON task_runs (output_path)
    WHERE output IS NOT NULL AND output_path <> 'runs/' || id || '/output.json';
