-- 001_init: the read model of the projections (see projections/postgres.go).
-- Quantities and money are bigint, times timestamptz (kept in UTC by the
-- store). Names that reads order by use the "C" collation, so that Postgres
-- orders them byte by byte as the in-memory store does.

-- checkpoints: the last stream sequence each projector committed.
CREATE TABLE checkpoints (
    projector text PRIMARY KEY,
    seq       bigint NOT NULL CHECK (seq >= 0)
);

-- skus: the fold state of each SKU (state: json.Marshal(*SKU), scalars and
-- suppliers), when its earliest open promise falls due, and its View as
-- columns for reads.
CREATE TABLE skus (
    shop              text COLLATE "C" NOT NULL,
    sku               text COLLATE "C" NOT NULL,
    state             jsonb       NOT NULL,
    next_due          timestamptz NULL,
    title             text        NOT NULL,
    status            text        NOT NULL,
    sales_form        text        NOT NULL,
    ship_within_hours integer     NOT NULL,
    ship_within_days  integer     NOT NULL,
    price_fen         bigint      NOT NULL,
    listed            bigint      NOT NULL,
    on_hand           bigint      NOT NULL,
    committed         bigint      NOT NULL,
    available         bigint      NOT NULL,
    capacity          bigint      NOT NULL,
    presale_committed bigint      NOT NULL,
    capacity_left     bigint      NOT NULL,
    open_orders       bigint      NOT NULL,
    late_orders       bigint      NOT NULL,
    exposure_fen      bigint      NOT NULL,
    open_alerts       bigint      NOT NULL,
    last_seq          bigint      NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (shop, sku)
);

-- The sweep (DueSKUs) reads only SKUs with a promise pending.
CREATE INDEX skus_next_due ON skus (next_due) WHERE next_due IS NOT NULL;

-- orders: every order a SKU has seen, closed ones too. sold_at is NULL for
-- an order known only from an early cancel or shipment (no sale yet); due is
-- NULL when the SKU had no ship promise; closed_at NULL while open.
CREATE TABLE orders (
    shop           text COLLATE "C" NOT NULL,
    sku            text COLLATE "C" NOT NULL,
    order_id       text COLLATE "C" NOT NULL,
    qty            bigint      NOT NULL,
    unit_price_fen bigint      NOT NULL,
    sales_form     text        NOT NULL,
    sold_at        timestamptz NULL,
    due            timestamptz NULL,
    seq            bigint      NOT NULL,
    state          text        NOT NULL,
    late           boolean     NOT NULL,
    closed_at      timestamptz NULL,
    early          boolean     NOT NULL,
    PRIMARY KEY (shop, sku, order_id)
);

-- alerts: the latest state of every alert.
CREATE TABLE alerts (
    id           text COLLATE "C" PRIMARY KEY,
    kind         text        NOT NULL,
    shop         text COLLATE "C" NOT NULL,
    sku          text COLLATE "C" NOT NULL,
    order_id     text COLLATE "C" NOT NULL,
    state        text        NOT NULL,
    raised_at    timestamptz NOT NULL,
    resolved_at  timestamptz NULL,
    message      text        NOT NULL,
    units_short  bigint      NOT NULL,
    exposure_fen bigint      NOT NULL,
    seq          bigint      NOT NULL,
    updated_seq  bigint      NOT NULL,
    rev          integer     NOT NULL
);

CREATE INDEX alerts_shop_state ON alerts (shop, state);
-- LoadSKU reads the open alerts of one SKU.
CREATE INDEX alerts_open_by_sku ON alerts (shop, sku) WHERE state = 'open';

-- alert_outbox: every alert change committed and not yet known published,
-- with the checkpoint (batch LastSeq) that committed it.
CREATE TABLE alert_outbox (
    id         bigserial PRIMARY KEY,
    alert      jsonb  NOT NULL,
    checkpoint bigint NOT NULL
);
