-- Which order holds each payment token: one token pays for one order.
-- createOrder's validation claims the token (unconfirmed); the order's
-- OrderCreated confirms the claim. An unconfirmed claim older than the
-- claim TTL may be taken over (its order was refused or its caller
-- crashed). claimed_at is in µs since the epoch; confirmed is 0 or 1.
CREATE TABLE payment_claims (
    payment_token TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    confirmed BIGINT NOT NULL
);

-- Why a payment FAILED (the processor refused the capture, or the token
-- was already another order's); NULL otherwise.
ALTER TABLE payments ADD COLUMN reason TEXT;
