-- auth.md agent registration: registrations, API keys, claim attempts, ID-JAG delegations,
-- the shared jti replay store and rate-limit windows.

CREATE TABLE agent_registrations (
    id TEXT PRIMARY KEY NOT NULL,
    -- "anonymous", "email-verification" or "agent-provider".
    registration_type TEXT NOT NULL,
    -- "pending" (no credential yet), "active", "claimed", "expired" or "revoked".
    status TEXT NOT NULL,
    requested_credential_type TEXT NOT NULL,
    -- The agent's own principal id (sub of its credentials until merged into a user).
    principal_id TEXT NOT NULL,
    scopes TEXT NOT NULL,
    claim_token_hash TEXT UNIQUE,
    claim_token_expires BIGINT NOT NULL,
    -- The verified email a registration asserted (email-verification).
    email TEXT,
    -- The user it belongs to: after a claim, or at once for agent-provider registrations.
    user_id TEXT REFERENCES users (id) ON DELETE SET NULL,
    -- After a claim: TRUE keeps the agent its own principal owned by the user.
    link BOOLEAN,
    provider_iss TEXT,
    provider_sub TEXT,
    created_at BIGINT NOT NULL,
    claimed_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX agent_registrations_status_expires ON agent_registrations (status, claim_token_expires);
CREATE INDEX agent_registrations_provider ON agent_registrations (provider_iss, provider_sub);
CREATE INDEX agent_registrations_user ON agent_registrations (user_id);

CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY NOT NULL,
    registration_id TEXT NOT NULL REFERENCES agent_registrations (id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_registration ON api_keys (registration_id);

CREATE TABLE claim_attempts (
    id TEXT PRIMARY KEY NOT NULL,
    registration_id TEXT NOT NULL REFERENCES agent_registrations (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    link BOOLEAN NOT NULL,
    -- Hash of the cv_ token in the emailed link.
    view_token_hash TEXT NOT NULL UNIQUE,
    -- "initiated", "completed", "cancelled", "locked" or "superseded".
    status TEXT NOT NULL,
    otp_hash TEXT,
    otp_expires_at BIGINT,
    failed_attempts INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX claim_attempts_registration ON claim_attempts (registration_id);

-- Every (issuer, jti) authmd has accepted: ID-JAGs, its own identity assertions, logout tokens.
CREATE TABLE seen_jtis (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX seen_jtis_expires ON seen_jtis (expires_at);

-- Earlier ID-JAG delegations: (provider issuer, subject) -> user.
CREATE TABLE delegations (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);

-- Fixed windows; a sliding window is estimated from the current and previous one.
CREATE TABLE rate_limit_windows (
    bucket TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
