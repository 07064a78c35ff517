-- Stock of a tracked product. A product without a row is untracked: it
-- never runs out. Invariant: 0 <= reserved <= on_hand (every statement that
-- moves either keeps it, and the checks refuse a statement that would not).
CREATE TABLE stock (
    product_id TEXT PRIMARY KEY,
    on_hand BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved BIGINT NOT NULL CHECK (reserved >= 0 AND reserved <= on_hand),
    modified_at TEXT NOT NULL
);

-- Units of a tracked product held for an order. `expires_micros` is set
-- while the order is not known to exist (between createOrder's check and
-- its OrderCreated) and cleared once it is; an expired hold is released.
CREATE TABLE stock_reservations (
    order_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    expires_micros BIGINT,
    PRIMARY KEY (order_id, product_id)
);

CREATE INDEX stock_reservations_by_expiry ON stock_reservations (expires_micros);

-- Units of a tracked product that left with an order's package, kept until
-- the delivery fails (they go back on hand) or completes (forgotten).
CREATE TABLE stock_shipped (
    order_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
