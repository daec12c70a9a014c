-- 005_shops_sync: shop health and stock sync instructions.

-- shops: each shop's folded health (projections.Shop as the projector's
-- JSON bytes: the sums of its SKUs' open, late, unserved and at-risk lines
-- and money at risk). Its fulfilment_risk alert lives in alerts, sku ''.
CREATE TABLE shops (
    shop     text COLLATE "C" PRIMARY KEY,
    state    bytea  NOT NULL,
    last_seq bigint NOT NULL
);

-- sync_outbox: every sync instruction committed and not yet known
-- published, with the checkpoint (batch LastSeq) that committed it. clear
-- marks a SKU whose listed and sellable agree again.
CREATE TABLE sync_outbox (
    id          bigserial PRIMARY KEY,
    instruction jsonb   NOT NULL,
    clear       boolean NOT NULL,
    checkpoint  bigint  NOT NULL
);

-- A shop's health and instructions come from a fold of the whole stream:
-- rebuild it (see 004).
TRUNCATE skus, lines, applied_keys, alerts, alert_outbox, checkpoints;
