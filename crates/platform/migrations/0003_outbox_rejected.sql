-- Events the bus refused for good (on NATS: larger than the server's
-- max_payload), moved here from _outbox by the relay so that they do not
-- hold up the events after them. seq, event_id, payload and created_at are
-- the outbox row's; error is the bus's refusal; rejected_at is in µs. No
-- unique key: setting an event aside must never fail, or the relay would be
-- stuck again (an operator may re-insert a row into _outbox and see it
-- refused a second time).
CREATE TABLE _outbox_rejected (
    seq BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    error TEXT NOT NULL,
    rejected_at BIGINT NOT NULL
);
