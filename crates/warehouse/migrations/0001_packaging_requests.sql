-- A packaging request: what the warehouse must pack for one order.
-- `modified_micros` is the order's modifiedDate the request reflects, so
-- older order events can be recognised and ignored. A request dropped
-- because its order was deleted stays as a DELETED tombstone, so an
-- OrderCreated delivered late cannot bring it back.
CREATE TABLE packaging_requests (
    order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    modified_micros BIGINT NOT NULL,
    created_micros BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX packaging_requests_by_status ON packaging_requests (status, created_micros, order_id);

-- One line per product. `ordered` is what the order asked for; `quantity`
-- is what will be packed (staff may lower it; 0 means removed).
CREATE TABLE packaging_lines (
    order_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    ordered BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
