-- Refunds. A captured payment keeps the token it was captured with
-- (`captured_token`: the card processor refunds by it) and the amount
-- captured; `refunded` is the sum refunded so far. One row per refund in
-- `payment_refunds`, keyed by the refund id the caller chose, so a retried
-- refund is recognised and never refunded twice.
ALTER TABLE payments ADD COLUMN captured BIGINT;
ALTER TABLE payments ADD COLUMN captured_token TEXT;
ALTER TABLE payments ADD COLUMN refunded BIGINT NOT NULL DEFAULT 0;

CREATE TABLE payment_refunds (
    refund_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
