-- The outbox needs no index on event_id: the bus de-duplicates by id, and
-- every commit paid for maintaining it. Rebuilt to drop the constraint
-- (SQLite cannot drop a table constraint); order is kept.
CREATE TABLE _outbox_new (
    seq {{serial}},
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO _outbox_new (event_id, payload, created_at)
    SELECT event_id, payload, created_at FROM _outbox ORDER BY seq;
DROP TABLE _outbox;
ALTER TABLE _outbox_new RENAME TO _outbox;
