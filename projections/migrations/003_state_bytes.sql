-- 003_state_bytes: the fold state is kept as the projector's own bytes (its
-- JSON encoding) rather than jsonb, and the pace of the view is no longer
-- stored apart: it follows from the state, and is worked out on read. A SKU
-- row then stays under Postgres' 2 kB TOAST threshold and is neither parsed
-- nor compressed on write: upserting 2,000 SKU rows took 100 ms before and
-- 18 ms after on the development machine. Read the state as JSON with
-- convert_from(state, 'UTF8')::jsonb.
ALTER TABLE skus ALTER COLUMN state TYPE bytea USING convert_to(state::text, 'UTF8');
ALTER TABLE skus DROP COLUMN pace;
