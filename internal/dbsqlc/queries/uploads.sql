-- Temporary uploads (migrations/005_temp_uploads.sql).

-- name: InsertTempUpload :one
-- Records an upload whose object is stored; it expires ttl_ms ms from now unless claimed.
INSERT INTO temp_uploads (id, storage_path, storage_backend_id, expires_at, original_filename, mime_type, size_bytes)
VALUES (sqlc.arg('id'), sqlc.arg('storage_path'), sqlc.arg('storage_backend_id'), now() + sqlc.arg('ttl_ms')::bigint * interval '1 millisecond', sqlc.arg('original_filename'), sqlc.arg('mime_type'), sqlc.arg('size_bytes'))
RETURNING uploaded_at, expires_at;

-- name: TempUploadGet :one
-- One upload. expired: past its expiry and not claimed (a claimed upload no longer expires).
SELECT id, storage_path, storage_backend_id, uploaded_at, expires_at,
       coalesce(claimed_task_run, claimed_pipeline_run) AS claimed_by, deleted_at, original_filename, mime_type, size_bytes,
       (expires_at <= now() AND claimed_task_run IS NULL AND claimed_pipeline_run IS NULL)::bool AS expired
FROM temp_uploads WHERE id = sqlc.arg('id');

-- name: TempUploadStats :one
-- expired counts the uploads waiting for the cleanup: expired, unclaimed, not deleted.
SELECT count(*) AS total,
       count(*) FILTER (WHERE expires_at <= now() AND deleted_at IS NULL
                          AND claimed_task_run IS NULL AND claimed_pipeline_run IS NULL) AS expired,
       count(*) FILTER (WHERE claimed_task_run IS NOT NULL OR claimed_pipeline_run IS NOT NULL) AS claimed,
       count(*) FILTER (WHERE deleted_at IS NOT NULL) AS deleted
FROM temp_uploads;

-- name: TempUploadDelete :one
-- Marks upload id deleted unless it is claimed or already deleted. A concurrent claim holds
-- the row: this waits for it and re-checks, so exactly one of the two wins.
UPDATE temp_uploads SET deleted_at = now()
WHERE id = sqlc.arg('id') AND deleted_at IS NULL AND claimed_task_run IS NULL AND claimed_pipeline_run IS NULL
RETURNING storage_path, storage_backend_id;

-- name: TempUploadRestore :exec
-- Undoes the deletion marks of ids whose objects could not be removed (the next cleanup, or
-- the caller, tries again).
UPDATE temp_uploads SET deleted_at = NULL WHERE id = ANY(sqlc.arg('ids')::text[]) AND deleted_at IS NOT NULL;

-- name: LockTempUploads :many
-- The uploads among ids, locked in id order (concurrent enqueues naming the same uploads
-- cannot deadlock), as they are once every concurrent delete or claim has committed.
SELECT id, (deleted_at IS NOT NULL)::bool AS deleted,
       (claimed_task_run IS NOT NULL OR claimed_pipeline_run IS NOT NULL)::bool AS claimed,
       (expires_at <= now())::bool AS expired
FROM temp_uploads WHERE id = ANY(sqlc.arg('ids')::text[])
ORDER BY id
FOR UPDATE;

-- name: ClaimTempUploads :exec
-- Claims each unclaimed upload ids[i] for run run_ids[i]: a pipeline run when pipeline, else a
-- task run.
-- An upload another run claimed keeps its claim.
UPDATE temp_uploads u
SET claimed_task_run = CASE WHEN sqlc.arg('pipeline')::boolean THEN NULL ELSE w.run_id END,
    claimed_pipeline_run = CASE WHEN sqlc.arg('pipeline')::boolean THEN w.run_id END,
    claimed_at = now()
FROM (SELECT unnest(sqlc.arg('ids')::text[]) AS id,
             unnest(sqlc.arg('run_ids')::text[]) AS run_id) AS w
WHERE u.id = w.id AND u.claimed_task_run IS NULL AND u.claimed_pipeline_run IS NULL AND u.deleted_at IS NULL;

-- name: ExpireTempUploads :many
-- Marks at most max expired, unclaimed uploads deleted, oldest expiry first, and returns their
-- objects. Rows a claim or a delete holds are skipped; the outer conditions re-check the rest.
UPDATE temp_uploads u SET deleted_at = now()
FROM (SELECT id FROM temp_uploads
      WHERE expires_at <= now() AND deleted_at IS NULL AND claimed_task_run IS NULL AND claimed_pipeline_run IS NULL
      ORDER BY expires_at LIMIT sqlc.arg('max')::int
      FOR UPDATE SKIP LOCKED) x
WHERE u.id = x.id AND u.deleted_at IS NULL AND u.claimed_task_run IS NULL AND u.claimed_pipeline_run IS NULL
RETURNING u.id, u.storage_path, u.storage_backend_id;

-- name: PurgeTempUploadTombstones :execrows
-- Rows of uploads deleted more than older_than_ms ms ago, at most max; now is the time (NULL =
-- the database clock).
DELETE FROM temp_uploads WHERE id IN (
    SELECT id FROM temp_uploads WHERE deleted_at < coalesce(sqlc.narg('now')::timestamptz, now()) - sqlc.arg('older_than_ms')::bigint * interval '1 millisecond'
    ORDER BY deleted_at LIMIT sqlc.arg('max')::int);
