-- Flow control (issue 14): named rate limits. The claim (runs.sql) enforces them.

-- name: PutRateLimit :one
-- Creates or replaces the named rate limit key. A changed limit or period applies from the next
-- claim; the runs counted in the current window stay counted when the period is unchanged.
INSERT INTO rate_limits AS r (key, max_runs, period_ms) VALUES (sqlc.arg('key'), sqlc.arg('max_runs'), sqlc.arg('period_ms'))
ON CONFLICT (key) DO UPDATE SET max_runs = excluded.max_runs, period_ms = excluded.period_ms, updated_at = now()
RETURNING key, max_runs, period_ms, created_at, updated_at;

-- name: GetRateLimit :one
SELECT key, max_runs, period_ms, created_at, updated_at FROM rate_limits WHERE key = sqlc.arg('key');

-- name: ListRateLimits :many
-- Named rate limits in key order, after key after (''= from the start), at most lim.
SELECT key, max_runs, period_ms, created_at, updated_at FROM rate_limits
WHERE key > sqlc.arg('after')::text ORDER BY key LIMIT sqlc.arg('lim');

-- name: RateLimitUsers :many
-- The registered tasks that share the named rate limit key (at most 10, for an error message).
SELECT id FROM tasks WHERE rate_limit_key = sqlc.arg('key') AND removed_in_version IS NULL ORDER BY id LIMIT 10;

-- name: DeleteRateLimit :execrows
-- Deletes the named rate limit key (callers then check that no task uses it, in the same
-- transaction: the row lock taken here waits for registrations naming it to commit).
DELETE FROM rate_limits WHERE key = sqlc.arg('key');

-- name: DeleteRateLimitWindow :exec
DELETE FROM rate_limit_windows WHERE bucket = 'key:' || sqlc.arg('key')::text;

-- name: RateLimitKeysExist :many
-- Which of keys are named rate limits; the share lock keeps them until the registration commits.
SELECT key FROM rate_limits WHERE key = ANY(sqlc.arg('keys')::text[]) FOR SHARE;

-- name: FlowControlInUse :one
-- Whether any registered task has a rate limit or a concurrency key, or any map item bounded by
-- its node's maxConcurrency is pending (migration 016): the claim then needs ClaimFlowControl.
SELECT EXISTS (SELECT 1 FROM tasks WHERE removed_in_version IS NULL
                 AND (rate_limit IS NOT NULL OR rate_limit_key IS NOT NULL OR concurrency_key IS NOT NULL)
               UNION ALL
               SELECT 1 FROM task_runs WHERE status = 'pending' AND map_concurrency IS NOT NULL);

-- name: RateLimitCount :one
SELECT count(*)::int FROM rate_limits;
