-- Trust rules: every credential names what it hangs from, so it dies with it.

-- A personal or workspace token may expire, and one minted by another token dies with its maker.
ALTER TABLE personal_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE personal_tokens ADD COLUMN parent_id TEXT;
CREATE INDEX personal_tokens_parent ON personal_tokens (parent_id);

-- Grants from a provider's ID-JAG remember (iss, sub), so the provider's logout reaches them.
ALTER TABLE grants ADD COLUMN provider_iss TEXT;
ALTER TABLE grants ADD COLUMN provider_sub TEXT;
CREATE INDEX grants_provider ON grants (provider_iss, provider_sub);

-- A disabled user cannot sign in, and everything issued for them is revoked.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

-- Secrets the server keys things with (CSRF tokens), shared by every instance.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY NOT NULL,
    secret BLOB NOT NULL,
    created_at BIGINT NOT NULL
);
