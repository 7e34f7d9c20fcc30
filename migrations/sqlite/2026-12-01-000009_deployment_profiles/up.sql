-- Deployment profiles: what a service built on authmd needs to be served by configuration.

-- When the credentials of an unclaimed registration stop working
-- (agent.unclaimed_credential_ttl_s); NULL: not before they are revoked, or claimed. Until now
-- they died with the claim window, which is what existing rows keep.
ALTER TABLE agent_registrations ADD COLUMN credentials_expire_at BIGINT;
UPDATE agent_registrations SET credentials_expire_at = claim_token_expires WHERE claimed_at IS NULL;

-- Owned workspaces. A workspace token names one by id; only members mint for it, and deleting
-- it revokes every token for it.
CREATE TABLE workspaces (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    owner_id TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX workspaces_owner ON workspaces (owner_id);
CREATE TABLE workspace_members (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id),
    added_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user ON workspace_members (user_id);

-- accounts.signup = "email_verified": the account is made when the emailed link is followed;
-- until then only this row (the link's hash, the address and the password's Argon2 hash) exists.
CREATE TABLE signup_links (
    token_hash TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
