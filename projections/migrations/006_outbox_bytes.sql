-- 006_outbox_bytes: the outboxes keep the projector's own JSON bytes, as
-- the skus' state does since 003. The publishers send those bytes as they
-- are, so Postgres no longer parses every alert change and instruction
-- into jsonb on insert (about 9% of the projector's statement time), and
-- the publishers no longer decode and encode them again. What a publisher
-- needs besides the message (subject, Nats-Msg-Id, the instruction's SKU
-- and sequence) is in plain columns written with it.
--
-- Rows still pending are converted. Their new columns come from the jsonb,
-- and their bytes are rebuilt as encoding/json writes projections.Alert and
-- projections.SyncInstruction (what the publisher sent for them until now,
-- after decoding the jsonb into those structs): the fields in struct order,
-- no spaces, order_id left out when empty, and the escapes Go adds to the
-- ones Postgres writes (<, >, &, U+2028 and U+2029; in JSON text these
-- occur only inside strings, so replacing them everywhere is safe). Absent
-- keys get Go's zero values. Read the bytes as JSON with
-- convert_from(alert, 'UTF8')::jsonb.

ALTER TABLE alert_outbox
    ADD COLUMN alert_id text,
    ADD COLUMN rev      integer,
    ADD COLUMN shop     text,
    ADD COLUMN kind     text;

UPDATE alert_outbox SET
    alert_id = coalesce(alert->>'id', ''),
    rev      = coalesce((alert->>'rev')::integer, 0),
    shop     = coalesce(alert->>'shop', ''),
    kind     = coalesce(alert->>'kind', '');

ALTER TABLE alert_outbox
    ALTER COLUMN alert_id SET NOT NULL,
    ALTER COLUMN rev SET NOT NULL,
    ALTER COLUMN shop SET NOT NULL,
    ALTER COLUMN kind SET NOT NULL,
    ALTER COLUMN alert TYPE bytea USING convert_to(
        replace(replace(replace(replace(replace(
            '{"id":' || coalesce(alert->'id', '""')::text ||
            ',"kind":' || coalesce(alert->'kind', '""')::text ||
            ',"shop":' || coalesce(alert->'shop', '""')::text ||
            ',"sku":' || coalesce(alert->'sku', '""')::text ||
            CASE WHEN coalesce(alert->>'order_id', '') = '' THEN ''
                ELSE ',"order_id":' || (alert->'order_id')::text END ||
            ',"state":' || coalesce(alert->'state', '""')::text ||
            ',"raised_at":' || coalesce(alert->'raised_at', '"0001-01-01T00:00:00Z"')::text ||
            ',"resolved_at":' || coalesce(alert->'resolved_at', 'null')::text ||
            ',"message":' || coalesce(alert->'message', '""')::text ||
            ',"units_short":' || coalesce(alert->'units_short', '0')::text ||
            ',"exposure_fen":' || coalesce(alert->'exposure_fen', '0')::text ||
            ',"seq":' || coalesce(alert->'seq', '0')::text ||
            ',"updated_seq":' || coalesce(alert->'updated_seq', '0')::text ||
            ',"rev":' || coalesce(alert->'rev', '0')::text || '}',
        '<', E'\\u003c'), '>', E'\\u003e'), '&', E'\\u0026'), chr(8232), E'\\u2028'), chr(8233), E'\\u2029'),
        'UTF8');

ALTER TABLE sync_outbox
    ADD COLUMN shop text,
    ADD COLUMN sku  text,
    ADD COLUMN seq  bigint,
    ADD COLUMN key  text;

UPDATE sync_outbox SET
    shop = coalesce(instruction->>'shop', ''),
    sku  = coalesce(instruction->>'sku', ''),
    seq  = coalesce((instruction->>'seq')::bigint, 0),
    key  = coalesce(instruction->>'key', '');

ALTER TABLE sync_outbox
    ALTER COLUMN shop SET NOT NULL,
    ALTER COLUMN sku SET NOT NULL,
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN key SET NOT NULL,
    ALTER COLUMN instruction TYPE bytea USING convert_to(
        replace(replace(replace(replace(replace(
            '{"shop":' || coalesce(instruction->'shop', '""')::text ||
            ',"sku":' || coalesce(instruction->'sku', '""')::text ||
            ',"listed":' || coalesce(instruction->'listed', '0')::text ||
            ',"sellable":' || coalesce(instruction->'sellable', '0')::text ||
            ',"delta":' || coalesce(instruction->'delta', '0')::text ||
            ',"seq":' || coalesce(instruction->'seq', '0')::text ||
            ',"key":' || coalesce(instruction->'key', '""')::text || '}',
        '<', E'\\u003c'), '>', E'\\u003e'), '&', E'\\u0026'), chr(8232), E'\\u2028'), chr(8233), E'\\u2029'),
        'UTF8');
