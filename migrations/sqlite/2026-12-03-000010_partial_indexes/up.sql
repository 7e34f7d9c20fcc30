-- Indexes on columns most rows leave NULL index only the rows that have a value. Every query on
-- these columns compares them with `=` or `IN`, which SQLite knows implies `IS NOT NULL`, so it
-- still uses them; a token issued by client_credentials (no grant, no registration) and its
-- audit row (no registration, no user) then write four index entries fewer, on the single
-- writer every issuance waits for.
DROP INDEX access_tokens_grant;
CREATE INDEX access_tokens_grant ON access_tokens (grant_id) WHERE grant_id IS NOT NULL;
DROP INDEX access_tokens_registration;
CREATE INDEX access_tokens_registration ON access_tokens (registration_id)
    WHERE registration_id IS NOT NULL;
DROP INDEX audit_events_registration;
CREATE INDEX audit_events_registration ON audit_events (registration_id)
    WHERE registration_id IS NOT NULL;
DROP INDEX audit_events_user;
CREATE INDEX audit_events_user ON audit_events (user_id) WHERE user_id IS NOT NULL;
