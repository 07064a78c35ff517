-- A pre-authorisation: an amount held on a card until it is processed or
-- cancelled. Only the last four digits of the card are kept.
CREATE TABLE payment_tokens (
    token TEXT PRIMARY KEY,
    amount BIGINT NOT NULL,
    card_last4 TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);
