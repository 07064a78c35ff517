-- Every status an order reached and when (µs since the epoch), written in
-- the transaction that changes the status. Statuses only move forward, so
-- an order reaches each at most once: the key makes a second write of one
-- (a redelivered event) a no-op.
CREATE TABLE order_status_changes (
    order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    at_micros BIGINT NOT NULL,
    PRIMARY KEY (order_id, status)
);
