-- One row per order. The order itself is kept whole as JSON (`body`, the
-- shape served and put in events); the columns beside it exist to find and
-- sort orders without parsing it.
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    idempotency_key TEXT,
    body TEXT NOT NULL
);

-- A user's orders, newest first (keyset pagination on created_at, order_id).
CREATE INDEX orders_by_user ON orders (user_id, created_at, order_id);

-- The same idempotency key of the same user names one order. NULL keys
-- (requests without one) never collide.
CREATE UNIQUE INDEX orders_idempotency ON orders (user_id, idempotency_key);
