-- A user: email (trimmed, lower-cased, unique) and an argon2id PHC hash.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL
);

-- Staff group membership (admin, warehouse, delivery).
CREATE TABLE user_groups (
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    group_name TEXT NOT NULL,
    PRIMARY KEY (user_id, group_name)
);

-- Live refresh tokens, by the SHA-256 of the token (the token itself is
-- never stored). Rotated on every use; deleted on sign-out.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);

-- Ed25519 key pairs that sign ID tokens. The newest signs; all are
-- published in the JWKS, so a rotation leaves older tokens valid.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    private_pkcs8 TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
