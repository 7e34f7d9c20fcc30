-- OAuth core: browser sessions, consents, authorization codes, grants (token families),
-- access and refresh tokens. Every secret is stored as its SHA-256 (hex) only.

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE consents (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    -- Space-separated, sorted.
    scope TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- A grant: everything issued from one authorization (code exchange, client credentials, ...),
-- revoked as a whole on code replay, refresh-token reuse or revocation of a refresh token.
CREATE TABLE grants (
    id TEXT PRIMARY KEY NOT NULL,
    -- NULL for agent grants (an identity assertion exchanged without a client).
    client_id TEXT REFERENCES clients (id) ON DELETE CASCADE,
    registration_id TEXT,
    user_id TEXT,
    -- The `sub` of the grant's tokens: the user, the client, or the agent principal.
    subject TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX grants_client ON grants (client_id);
CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_registration ON grants (registration_id);

CREATE TABLE authorization_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    resource TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    -- The grant created when the code was exchanged; revoked if the code is replayed.
    grant_id TEXT
);

-- Opaque access tokens are keyed by the SHA-256 of the token, JWT access tokens by their jti,
-- so introspection is one primary-key lookup either way.
CREATE TABLE access_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    grant_id TEXT,
    -- The agent registration the token speaks for, if any.
    registration_id TEXT,
    client_id TEXT,
    subject TEXT NOT NULL,
    user_id TEXT,
    scope TEXT NOT NULL,
    audience TEXT NOT NULL,
    prefix TEXT NOT NULL,
    format TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX access_tokens_grant ON access_tokens (grant_id);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);
CREATE INDEX access_tokens_registration ON access_tokens (registration_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    grant_id TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    -- The pair issued when this token was used, encrypted under a key derived from this
    -- token itself, so a retry inside the grace window gets the same answer while the
    -- database holds nothing readable.
    successor_sealed BLOB,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
