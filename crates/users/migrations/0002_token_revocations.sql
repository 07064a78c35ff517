-- Token versions of revoked users. An ID token carries its user's version
-- when issued (`ver`, 0 for users never revoked); deleting a user or
-- removing one of their groups raises it, and verifiers refuse tokens below
-- it. Rows stay after the user is deleted, so the version never goes back.
-- `revoked_at` (Unix µs) lets other processes fetch what is new.
CREATE TABLE token_revocations (
    user_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX token_revocations_by_time ON token_revocations (revoked_at);
