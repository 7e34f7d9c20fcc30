-- Indexes on columns most rows leave NULL index only the rows that have a value, as SQLite's
-- have since `2026-12-03-000010_partial_indexes`: a token issued by client_credentials (no
-- grant, no registration) and its audit row (no registration, no user) write four index
-- entries fewer. Every query on these columns compares them with `=` or `= ANY($1)`, from which
-- PostgreSQL proves `IS NOT NULL` even in the generic plan of a prepared statement (checked on
-- PostgreSQL 15 with `EXPLAIN EXECUTE` under `plan_cache_mode = force_generic_plan`; the reason
-- `000010` gave for keeping full indexes here was wrong). A unit test checks that each look-up
-- still uses its index.
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
