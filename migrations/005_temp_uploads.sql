-- Temporary uploads (POST /api/upload/temp): a file stored under temp-uploads/{id}/{filename}
-- in the default backend, kept for 24 hours unless a run claims it. A task or pipeline input
-- that names the upload's id claims it for that run in the enqueue's (or trigger's)
-- transaction; a claimed upload no longer expires and lives as long as the run that claimed
-- it: when retention purges that run, the foreign key releases the claim and the next cleanup
-- deletes the upload, whose expiry has long passed.
--
-- Deleting an upload (DELETE /api/upload/temp/{id} or the cleanup of expired, unclaimed
-- ones) removes its object and keeps the row as a tombstone (deleted_at) that GET and the
-- stats report; tombstones are removed after the retention period.

CREATE TABLE temp_uploads (
    id                   text PRIMARY KEY,
    storage_path         text NOT NULL,
    storage_backend_id   text NOT NULL,
    uploaded_at          timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL,
    -- At most one of the two: the standalone task run, or the pipeline run, that claimed it.
    claimed_task_run     text REFERENCES task_runs (id) ON DELETE SET NULL,
    claimed_pipeline_run text REFERENCES pipeline_runs (id) ON DELETE SET NULL,
    claimed_at           timestamptz,
    deleted_at           timestamptz,
    original_filename    text NOT NULL,
    mime_type            text NOT NULL,
    size_bytes           bigint NOT NULL,
    CHECK (claimed_task_run IS NULL OR claimed_pipeline_run IS NULL)
);
-- Cleanup: live, unclaimed uploads by expiry (tracks live uploads only).
CREATE INDEX temp_uploads_expiring ON temp_uploads (expires_at)
    WHERE deleted_at IS NULL AND claimed_task_run IS NULL AND claimed_pipeline_run IS NULL;
-- Tombstones by deletion time, for their removal after retention.
CREATE INDEX temp_uploads_deleted ON temp_uploads (deleted_at) WHERE deleted_at IS NOT NULL;
-- The foreign keys' ON DELETE SET NULL, when retention purges runs.
CREATE INDEX temp_uploads_task_run ON temp_uploads (claimed_task_run) WHERE claimed_task_run IS NOT NULL;
CREATE INDEX temp_uploads_pipeline_run ON temp_uploads (claimed_pipeline_run) WHERE claimed_pipeline_run IS NOT NULL;
