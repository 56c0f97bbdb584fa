-- Locks, commit modes and notifications the engine's transactions and loops take.

-- name: LockClaimsAsyncCommit :exec
-- Takes the claim lock (lock) for the transaction, whose commit then does not wait for the WAL
-- flush.
SELECT pg_advisory_xact_lock(sqlc.arg('lock')::bigint), set_config('synchronous_commit', 'off', true);

-- name: AsyncCommit :exec
-- The transaction's commit does not wait for the WAL flush.
SELECT set_config('synchronous_commit', 'off', true);

-- name: LockClaims :exec
-- Takes the claim lock (lock) for the transaction.
SELECT pg_advisory_xact_lock(sqlc.arg('lock')::bigint);

-- name: ListenReady :exec
-- Subscribes the session to the notifications NotifyReady sends.
LISTEN pipeweave_ready;
