-- Foundation: clients, users, signing keys and the audit log (SPEC sections 3 and 4).
-- Times are Unix seconds (BIGINT) so one schema.rs serves SQLite and PostgreSQL.

CREATE TABLE clients (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    -- SHA-256 (hex) of the generated client secret; NULL for public clients.
    secret_hash TEXT,
    secret_prefix TEXT,
    is_public BOOLEAN NOT NULL,
    -- JSON arrays of strings.
    redirect_uris TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    -- Space-separated scope list the client may request.
    scope TEXT NOT NULL,
    can_introspect BOOLEAN NOT NULL,
    token_endpoint_auth_method TEXT NOT NULL,
    application_type TEXT NOT NULL,
    -- RFC 7592 registration access token hash, for dynamically registered clients.
    registration_token_hash TEXT,
    -- The RFC 7591 metadata as registered, echoed by RFC 7592 reads.
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    -- Lower-cased; unique.
    email TEXT NOT NULL UNIQUE,
    -- argon2id PHC string; NULL for users created from a verified identity assertion.
    password_hash TEXT,
    email_verified BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    alg TEXT NOT NULL,
    -- PKCS#8 DER of the private key.
    private_key BLOB NOT NULL,
    -- The public JWK (JSON) published at /.well-known/jwks.json.
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Set when a newer key took over signing; the key stays published while it can still
    -- verify something it signed.
    retired_at BIGINT
);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    event TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    actor TEXT,
    ip TEXT,
    registration_id TEXT,
    client_id TEXT,
    user_id TEXT,
    -- JSON object with event-specific, non-secret details.
    detail TEXT NOT NULL
);

CREATE INDEX audit_events_created_at ON audit_events (created_at);
CREATE INDEX audit_events_event_created_at ON audit_events (event, created_at);
CREATE INDEX audit_events_registration ON audit_events (registration_id);
CREATE INDEX audit_events_user ON audit_events (user_id);
