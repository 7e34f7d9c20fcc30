-- People and operators: personal and workspace tokens, and stored answers for Idempotency-Key.

CREATE TABLE personal_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- A workspace token acts only inside this workspace; NULL for a personal token.
    workspace TEXT,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX personal_tokens_user ON personal_tokens (user_id);

-- One row per (endpoint, Idempotency-Key). The answer is encrypted under a key derived from
-- the Idempotency-Key; only a hash of the key is stored for look-up.
CREATE TABLE idempotency_keys (
    key_hash TEXT PRIMARY KEY NOT NULL,
    request_hash TEXT NOT NULL,
    -- NULL while the first request is still running.
    status INTEGER,
    content_type TEXT,
    sealed_body BLOB,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
