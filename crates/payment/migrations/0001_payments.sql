-- The payment of each order: its token at the card processor until the
-- payment is settled, then only how it was settled (the token is forgotten).
CREATE TABLE payments (
    order_id TEXT PRIMARY KEY,
    payment_token TEXT,
    total BIGINT NOT NULL,
    status TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
