-- Only holds that can still expire are in the expiry index: a hold whose
-- order arrived (expires_micros cleared) leaves it instead of joining its
-- NULL end, so the index stays as small as the holds waiting for their
-- orders, and confirming a hold deletes one index entry instead of moving it.
DROP INDEX stock_reservations_by_expiry;
CREATE INDEX stock_reservations_by_expiry ON stock_reservations (expires_micros)
    WHERE expires_micros IS NOT NULL;
