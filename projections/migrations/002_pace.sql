-- 002_pace: the pace part of each SKU's view (pace_per_hour, sellout_eta,
-- live_id, sales_by_minute) as one JSON document: it is only read back whole.
ALTER TABLE skus ADD COLUMN pace jsonb NOT NULL DEFAULT '{"sales_by_minute":[]}';
