-- Outbox: events written in the same transaction as the change they
-- describe, published by the relay, then deleted.
CREATE TABLE _outbox (
    seq {{serial}},
    event_id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Inbox: (consumer, event id) pairs already applied, recorded in the same
-- transaction as the effect, so a redelivered event has no second effect.
CREATE TABLE _inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
