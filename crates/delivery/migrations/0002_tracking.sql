-- The tracking id a delivery gets when it starts (random, 12 characters),
-- NULL before.
ALTER TABLE deliveries ADD COLUMN tracking_id TEXT;
