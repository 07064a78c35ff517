-- A delivery of an archived event no longer copies its payload: NULL means
-- "the payload of bus_events with this event_id". Only deliveries of
-- events that are not in the archive (redriven dead letters, raw
-- publishes) carry their own. Rebuilt because SQLite cannot drop NOT NULL.
CREATE TABLE bus_deliveries_new (
    id {{serial}},
    rule TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT,
    attempts BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_error TEXT,
    UNIQUE (rule, event_id)
);
INSERT INTO bus_deliveries_new (rule, event_id, payload, attempts, due_at, created_at, last_error)
    SELECT rule, event_id, payload, attempts, due_at, created_at, last_error FROM bus_deliveries ORDER BY id;
DROP TABLE bus_deliveries;
ALTER TABLE bus_deliveries_new RENAME TO bus_deliveries;
CREATE INDEX bus_deliveries_due ON bus_deliveries (rule, due_at);
