-- 004_lines: contract v2. An order line (shop, sku, order_id) replaces the
-- order: it may ship, be cancelled and come back in parts, and it keeps the
-- documents applied to it (waybills, refunds, returns) so that a re-send is
-- applied once, however late. Restock keys are kept for the same reason.
-- The fold's state changed shape too (last-writer-wins slots, shipped
-- presale units, safety stock), so the read model is rebuilt from the event
-- stream rather than converted: every derived table is emptied and every
-- checkpoint dropped, and the projector folds the stream again from its
-- first event at start. Nothing is lost: the stream holds every event.

DROP TABLE orders;

-- lines: every order line a SKU has seen, closed ones too. state is early
-- (only events before the sale are known: sold_at NULL, seq 0), open or
-- closed. book holds the line's promise slot, applied documents and early
-- events as the projector's own JSON bytes: only read back whole.
CREATE TABLE lines (
    shop            text COLLATE "C" NOT NULL,
    sku             text COLLATE "C" NOT NULL,
    order_id        text COLLATE "C" NOT NULL,
    parent_order_id text        NOT NULL,
    qty             bigint      NOT NULL,
    unit_price_fen  bigint      NOT NULL,
    sales_form      text        NOT NULL,
    sold_at         timestamptz NULL,
    ship_by         timestamptz NULL,
    seq             bigint      NOT NULL,
    shipped         bigint      NOT NULL,
    cancelled       bigint      NOT NULL,
    returned        bigint      NOT NULL,
    late            boolean     NOT NULL,
    closed_at       timestamptz NULL,
    state           text        NOT NULL CHECK (state IN ('early', 'open', 'closed')),
    book            bytea       NOT NULL,
    PRIMARY KEY (shop, sku, order_id)
);
-- LoadSKU reads the lines the fold keeps in memory: early and open ones.
CREATE INDEX lines_held ON lines (shop, sku) WHERE state <> 'closed';

-- applied_keys: natural keys applied to a SKU that no line holds (restocks).
CREATE TABLE applied_keys (
    shop text COLLATE "C" NOT NULL,
    sku  text COLLATE "C" NOT NULL,
    key  text COLLATE "C" NOT NULL,
    PRIMARY KEY (shop, sku, key)
);

ALTER TABLE skus ADD COLUMN presale_shipped bigint NOT NULL DEFAULT 0;
ALTER TABLE skus ADD COLUMN safety_stock bigint NOT NULL DEFAULT 0;
ALTER TABLE skus ADD COLUMN sellable bigint NOT NULL DEFAULT 0;

-- Rebuild from the stream.
TRUNCATE skus, alerts, alert_outbox, checkpoints;
