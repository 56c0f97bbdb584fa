-- Temporary uploads (migrations/005_temp_uploads.sql).

-- name: insert_temp_upload
-- Records an upload whose object is stored; it expires $7 ms from now unless claimed.
INSERT INTO temp_uploads (id, storage_path, storage_backend_id, expires_at, original_filename, mime_type, size_bytes)
VALUES ($1, $2, $3, now() + $7::bigint * interval '1 millisecond', $4, $5, $6)
RETURNING uploaded_at, expires_at;

-- name: temp_upload_get
-- One upload. expired: past its expiry and not claimed (a claimed upload no longer expires).
SELECT id, storage_path, storage_backend_id, uploaded_at, expires_at,
       coalesce(claimed_task_run, claimed_pipeline_run), deleted_at, original_filename, mime_type, size_bytes,
       expires_at <= now() AND claimed_task_run IS NULL AND claimed_pipeline_run IS NULL
FROM temp_uploads WHERE id = $1;

-- name: temp_upload_stats
-- expired counts the uploads waiting for the cleanup: expired, unclaimed, not deleted.
SELECT count(*),
       count(*) FILTER (WHERE expires_at <= now() AND deleted_at IS NULL
                          AND claimed_task_run IS NULL AND claimed_pipeline_run IS NULL),
       count(*) FILTER (WHERE claimed_task_run IS NOT NULL OR claimed_pipeline_run IS NOT NULL),
       count(*) FILTER (WHERE deleted_at IS NOT NULL)
FROM temp_uploads;

-- name: temp_upload_delete
-- Marks upload $1 deleted unless it is claimed or already deleted. A concurrent claim holds
-- the row: this waits for it and re-checks, so exactly one of the two wins.
UPDATE temp_uploads SET deleted_at = now()
WHERE id = $1 AND deleted_at IS NULL AND claimed_task_run IS NULL AND claimed_pipeline_run IS NULL
RETURNING storage_path, storage_backend_id;

-- name: temp_upload_restore
-- Undoes the deletion marks of $1 whose objects could not be removed (the next cleanup, or
-- the caller, tries again).
UPDATE temp_uploads SET deleted_at = NULL WHERE id = ANY($1::text[]) AND deleted_at IS NOT NULL;

-- name: lock_temp_uploads
-- The uploads among $1, locked in id order (concurrent enqueues naming the same uploads
-- cannot deadlock), as they are once every concurrent delete or claim has committed.
SELECT id, deleted_at IS NOT NULL, claimed_task_run IS NOT NULL OR claimed_pipeline_run IS NOT NULL,
       expires_at <= now()
FROM temp_uploads WHERE id = ANY($1::text[])
ORDER BY id
FOR UPDATE;

-- name: claim_temp_uploads
-- Claims each unclaimed upload $1[i] for run $2[i]: a pipeline run when $3, else a task run.
-- An upload another run claimed keeps its claim.
UPDATE temp_uploads u
SET claimed_task_run = CASE WHEN $3::boolean THEN NULL ELSE w.run_id END,
    claimed_pipeline_run = CASE WHEN $3::boolean THEN w.run_id END,
    claimed_at = now()
FROM unnest($1::text[], $2::text[]) AS w(id, run_id)
WHERE u.id = w.id AND u.claimed_task_run IS NULL AND u.claimed_pipeline_run IS NULL AND u.deleted_at IS NULL;

-- name: expire_temp_uploads
-- Marks at most $1 expired, unclaimed uploads deleted, oldest expiry first, and returns their
-- objects. Rows a claim or a delete holds are skipped; the outer conditions re-check the rest.
UPDATE temp_uploads u SET deleted_at = now()
FROM (SELECT id FROM temp_uploads
      WHERE expires_at <= now() AND deleted_at IS NULL AND claimed_task_run IS NULL AND claimed_pipeline_run IS NULL
      ORDER BY expires_at LIMIT $1
      FOR UPDATE SKIP LOCKED) x
WHERE u.id = x.id AND u.deleted_at IS NULL AND u.claimed_task_run IS NULL AND u.claimed_pipeline_run IS NULL
RETURNING u.id, u.storage_path, u.storage_backend_id;

-- name: purge_temp_upload_tombstones
-- Rows of uploads deleted more than $1 ms ago, at most $2.
DELETE FROM temp_uploads WHERE id IN (
    SELECT id FROM temp_uploads WHERE deleted_at < now() - $1::bigint * interval '1 millisecond'
    ORDER BY deleted_at LIMIT $2);
