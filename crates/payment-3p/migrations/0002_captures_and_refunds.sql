-- What the processor did with a token, so the merchant (and an operator)
-- can tell its own capture from someone else's: `order_id` names the order
-- that processed or cancelled the token (NULL when the caller named none),
-- `captured_amount` what was captured (NULL until processed),
-- `refunded_amount` the sum of the refunds so far.
ALTER TABLE payment_tokens ADD COLUMN order_id TEXT;
ALTER TABLE payment_tokens ADD COLUMN captured_amount BIGINT;
ALTER TABLE payment_tokens ADD COLUMN refunded_amount BIGINT NOT NULL DEFAULT 0;

-- One row per refund. The key makes a retried refund (same refund id)
-- answer without refunding twice.
CREATE TABLE payment_refunds (
    token TEXT NOT NULL,
    refund_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (token, refund_id)
);
