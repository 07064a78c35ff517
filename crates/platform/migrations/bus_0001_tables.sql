-- The embedded bus, in the platform's own database.

-- Archive: every event published, once (the unique id de-duplicates
-- publishes), kept for the retention period for replay.
CREATE TABLE bus_events (
    seq {{serial}},
    event_id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    detail_type TEXT NOT NULL,
    event_time BIGINT NOT NULL,
    published_at BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX bus_events_by_time ON bus_events (event_time);

-- Rules registered by the servers, so that a publish from any process
-- (the CLI included) fans out to every rule.
CREATE TABLE bus_rules (
    name TEXT PRIMARY KEY,
    pattern TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);

-- Pending deliveries: one row per (rule, event) until the handler succeeds
-- or the event is dead-lettered.
CREATE TABLE bus_deliveries (
    id {{serial}},
    rule TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_error TEXT,
    UNIQUE (rule, event_id)
);
CREATE INDEX bus_deliveries_due ON bus_deliveries (rule, due_at);

-- Dead letters per rule: the event, the last error and the attempt count.
CREATE TABLE bus_dead_letters (
    id {{serial}},
    rule TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    failed_at BIGINT NOT NULL,
    UNIQUE (rule, event_id)
);
