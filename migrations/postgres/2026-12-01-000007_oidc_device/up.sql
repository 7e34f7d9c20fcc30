-- OpenID Connect: what an ID token issued from a code needs to say.
ALTER TABLE authorization_codes ADD COLUMN nonce TEXT;
-- When the person signed in (the session's start): the ID token's auth_time.
ALTER TABLE authorization_codes ADD COLUMN auth_time BIGINT;

-- RFC 8628 device authorization requests. Both codes are stored as SHA-256 only; the user
-- code is hashed in its normal form (upper case, no dash).
CREATE TABLE device_codes (
    device_code_hash TEXT PRIMARY KEY NOT NULL,
    user_code_hash TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Seconds the client must wait between polls; raised by 5 on every slow_down.
    poll_interval BIGINT NOT NULL,
    last_polled_at BIGINT,
    -- pending, approved, denied, used
    status TEXT NOT NULL,
    user_id TEXT REFERENCES users (id) ON DELETE CASCADE,
    auth_time BIGINT,
    grant_id TEXT
);
CREATE INDEX device_codes_expires ON device_codes (expires_at);
