-- Webhooks and their deliveries (migrations/011_webhooks.sql). now is the time (NULL = the
-- database clock).

-- name: WebhookUpsert :one
-- Creates webhook id or replaces its url, events and enabled; its secret too unless secret is
-- NULL (an update that names no secret keeps the one it has). created is true for a new one.
INSERT INTO webhooks (id, url, events, secret, enabled)
VALUES (sqlc.arg('id'), sqlc.arg('url'), sqlc.arg('events')::text[], coalesce(sqlc.narg('secret')::text, sqlc.arg('new_secret')::text), sqlc.arg('enabled'))
ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, events = EXCLUDED.events, enabled = EXCLUDED.enabled,
    secret = coalesce(sqlc.narg('secret')::text, webhooks.secret), updated_at = now()
RETURNING id, url, events, secret, enabled, created_at, updated_at, (xmax = 0)::bool AS created;

-- name: WebhookCount :one
SELECT count(*) FROM webhooks;

-- name: WebhookGet :one
SELECT id, url, events, secret, enabled, created_at, updated_at FROM webhooks WHERE id = sqlc.arg('id');

-- name: WebhookList :many
-- At most max webhooks by id.
SELECT id, url, events, secret, enabled, created_at, updated_at FROM webhooks ORDER BY id LIMIT sqlc.arg('max')::int;

-- name: WebhookDelete :execrows
-- Deletes webhook id and, by cascade, its deliveries.
DELETE FROM webhooks WHERE id = sqlc.arg('id');

-- name: WebhookDeliveries :many
-- The deliveries of webhook webhook_id, newest first, of status status ('' = any), before
-- cursor (an id, '' = from the newest), at most max.
SELECT id, webhook_id, event, status, attempts, next_attempt_at, last_attempt_at, last_status_code,
       coalesce(last_error, '') AS last_error, created_at, finished_at
FROM webhook_deliveries
WHERE webhook_id = sqlc.arg('webhook_id') AND (sqlc.arg('status')::text = '' OR status = sqlc.arg('status')::text)
  AND (sqlc.arg('cursor')::text = '' OR id < sqlc.arg('cursor')::text)
ORDER BY id DESC
LIMIT sqlc.arg('max')::int;

-- name: WebhookDeliveryGet :one
SELECT id, webhook_id, event, status, attempts, next_attempt_at, last_attempt_at, last_status_code,
       coalesce(last_error, '') AS last_error, created_at, finished_at
FROM webhook_deliveries WHERE id = sqlc.arg('id') AND webhook_id = sqlc.arg('webhook_id');

-- name: WebhookDeliveryResend :one
-- Makes a delivered or dead delivery pending and due now, its attempts counted afresh; it keeps
-- its id (the webhook-id receivers dedupe on). No row when it is pending or not found.
UPDATE webhook_deliveries SET status = 'pending', attempts = 0, finished_at = NULL,
    next_attempt_at = coalesce(sqlc.narg('now')::timestamptz, now())
WHERE id = sqlc.arg('id') AND webhook_id = sqlc.arg('webhook_id') AND status <> 'pending'
RETURNING id, webhook_id, event, status, attempts, next_attempt_at, last_attempt_at, last_status_code,
       coalesce(last_error, '') AS last_error, created_at, finished_at;

-- name: WebhookClaim :many
-- Takes up to max due deliveries, oldest due first: each counts an attempt, gets a new lease,
-- and is not due again until lease_ms ms from now (longer than the request may take), so no
-- other claim takes it meanwhile. Rows another claim holds are skipped.
WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= coalesce(sqlc.narg('now')::timestamptz, now())
    ORDER BY d.next_attempt_at
    LIMIT sqlc.arg('max')::int
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d SET attempts = d.attempts + 1, lease = d.lease + 1,
    last_attempt_at = coalesce(sqlc.narg('now')::timestamptz, now()),
    next_attempt_at = coalesce(sqlc.narg('now')::timestamptz, now()) + sqlc.arg('lease_ms')::bigint * interval '1 millisecond'
FROM due, webhooks w
WHERE d.id = due.id AND w.id = d.webhook_id
RETURNING d.id, d.webhook_id, d.event, d.payload, d.attempts, d.lease, w.url, w.secret;

-- name: WebhookDelivered :execrows
-- Records the 2xx answer of the attempt holding lease.
UPDATE webhook_deliveries SET status = 'delivered', last_status_code = sqlc.narg('status_code'), last_error = NULL,
    finished_at = coalesce(sqlc.narg('now')::timestamptz, now())
WHERE id = sqlc.arg('id') AND lease = sqlc.arg('lease') AND status = 'pending';

-- name: WebhookAttemptFailed :execrows
-- Records a failed attempt holding lease: due again retry_ms ms from now, or dead when dead.
UPDATE webhook_deliveries SET last_status_code = sqlc.narg('status_code'), last_error = sqlc.arg('error'),
    status = CASE WHEN sqlc.arg('dead')::bool THEN 'dead' ELSE 'pending' END,
    finished_at = CASE WHEN sqlc.arg('dead')::bool THEN coalesce(sqlc.narg('now')::timestamptz, now()) END,
    next_attempt_at = coalesce(sqlc.narg('now')::timestamptz, now()) + sqlc.arg('retry_ms')::bigint * interval '1 millisecond'
WHERE id = sqlc.arg('id') AND lease = sqlc.arg('lease') AND status = 'pending';

-- name: PurgeWebhookDeliveries :execrows
-- Delivered and dead deliveries finished more than older_than_ms ms ago, at most max.
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status <> 'pending' AND finished_at < coalesce(sqlc.narg('now')::timestamptz, now()) - sqlc.arg('older_than_ms')::bigint * interval '1 millisecond'
    ORDER BY finished_at LIMIT sqlc.arg('max')::int);

-- name: WebhookEmit :one
-- Queues event with data for the webhooks that want it (webhook_emit), in the caller's
-- transaction; returns how many deliveries it queued.
SELECT webhook_emit(sqlc.arg('event')::text, sqlc.arg('data')::jsonb)::int AS queued;
