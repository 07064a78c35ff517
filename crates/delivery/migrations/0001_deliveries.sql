-- A delivery of one packaged order to the order's address (JSON, as the
-- order gave it).
CREATE TABLE deliveries (
    order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    address TEXT NOT NULL,
    created_micros BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX deliveries_by_status ON deliveries (status, created_micros, order_id);
