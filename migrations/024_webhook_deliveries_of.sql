-- One definition of a delivery, for webhook_emit and for the group commit's statement.
--
-- Migration 023's CompleteStandalone queued the task_run.completed deliveries of its
-- completions with an INSERT of its own that repeated webhook_emit's: the payload's envelope
-- (type, timestamp, data) and the choice and locking of the webhooks. Both now take their rows
-- from webhook_deliveries_of, which makes one delivery of event per wanting webhook and per
-- element of datas.
CREATE FUNCTION webhook_deliveries_of(ev text, datas jsonb[])
RETURNS TABLE (delivery_id text, webhook text, event_name text, body text) LANGUAGE sql VOLATILE AS $$
    SELECT webhook_delivery_id(), w.id, ev,
           jsonb_build_object('type', ev,
                              'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                              'data', d.data)::text
    FROM webhooks w CROSS JOIN unnest(datas) WITH ORDINALITY AS d(data, i)
    WHERE w.enabled AND ev = ANY (w.events)
    ORDER BY d.i, w.id
    -- KEY SHARE: a concurrent DELETE of the webhook is waited for and the webhook skipped,
    -- instead of the delivery's foreign key check failing the caller's change with 23503.
    FOR KEY SHARE OF w
$$;

CREATE OR REPLACE FUNCTION webhook_emit(event text, data jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO webhook_deliveries (id, webhook_id, event, payload)
    SELECT * FROM webhook_deliveries_of(event, ARRAY[data]);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
