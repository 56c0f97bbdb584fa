-- Locks, commit modes and notifications the engine's transactions and loops take.

-- name: LockClaimsGenericPlan :exec
-- Takes the claim lock (lock) for the rest of the transaction, whose later statements run on
-- generic plans (see AsyncCommit), and without JIT compilation: the claim's estimated cost grows
-- with the queue's depth (a deep backlog of a rate-limited task, whose runs the claim never
-- reads, took it past jit_above_cost), and compiling it cost 0.3-9 s on a busy machine where the
-- claim itself takes a few ms. Nor does it use bitmap scans: the claim's count of the runs in
-- flight chose one on task_runs_inflight, and a bitmap scan visits every dead index entry that
-- finished runs left since the last vacuum, each time (6,028 entries for 228 live runs in a
-- claim under load); with bitmap scans off the claim read half the buffers (README,
-- Performance). The commit waits for the WAL flush as usual: a claim authorises a dispatch, and
-- a group commit of callbacks that claims must be durable once answered.
SELECT pg_advisory_xact_lock(sqlc.arg('lock')::bigint), set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('jit', 'off', true), set_config('enable_bitmapscan', 'off', true),
       set_config('pipeweave.claim_locked', 'true', true);

-- name: TryLockClaimsGenericPlan :one
-- LockClaimsGenericPlan for a transaction that must not wait for the claim lock: one that holds
-- the locks of pipeline runs and task runs while a claim holding the claim lock may wait for
-- one of those (the acknowledgements that ride after a group commit's claim). It takes the lock
-- only if it is free, says whether it did, and records the answer for the rest of the
-- transaction in pipeweave.claim_locked, which Claim and ClaimFlowControl read: 'false', they
-- claim nothing, as a claim whose snapshot the lock does not order must not.
SELECT set_config('pipeweave.claim_locked', pg_try_advisory_xact_lock(sqlc.arg('lock')::bigint)::text, true) = 'true' AS locked,
       set_config('plan_cache_mode', 'force_generic_plan', true), set_config('jit', 'off', true),
       set_config('enable_bitmapscan', 'off', true);

-- name: AsyncCommit :exec
-- The transaction's commit does not wait for the WAL flush, and its statements run on generic
-- plans. These hot statements (the claim, the dispatch results) are found through their keys
-- and arrays, whatever the values: PostgreSQL settles on their generic plans anyway, but only
-- after planning each one afresh for its first five runs on every connection, and the claim
-- takes milliseconds to plan. With many instances, each with its pool, that planning was a
-- tenth of the database's CPU under load (README, Performance).
SELECT set_config('synchronous_commit', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true);

-- name: LockClaims :exec
-- Takes the claim lock (lock) for the transaction.
SELECT pg_advisory_xact_lock(sqlc.arg('lock')::bigint);

-- name: ListenReady :exec
-- Subscribes the session to the notifications NotifyReady sends.
LISTEN pipeweave_ready;
