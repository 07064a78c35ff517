-- SHA-256 (hex) of the canonical request an idempotency key was first used
-- with: the same key with another request is refused. NULL for orders
-- without a key, and for keyed orders stored before this column existed
-- (their key answers any request, as before).
ALTER TABLE orders ADD COLUMN request_hash TEXT;
