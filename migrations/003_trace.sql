-- Tracing: the W3C traceparent a run continues, so that a pipeline run is one trace across
-- services and processes. A trigger stores its span's context with the pipeline run and every
-- node; a standalone enqueue stores the caller's traceparent, or its own span's. Each dispatch
-- starts a span that is a child of the stored context. NULL: the run belongs to no trace.

ALTER TABLE pipeline_runs ADD COLUMN traceparent text;
ALTER TABLE task_runs ADD COLUMN traceparent text;
