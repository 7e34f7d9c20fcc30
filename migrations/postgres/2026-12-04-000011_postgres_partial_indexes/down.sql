DROP INDEX access_tokens_grant;
CREATE INDEX access_tokens_grant ON access_tokens (grant_id);
DROP INDEX access_tokens_registration;
CREATE INDEX access_tokens_registration ON access_tokens (registration_id);
DROP INDEX audit_events_registration;
CREATE INDEX audit_events_registration ON audit_events (registration_id);
DROP INDEX audit_events_user;
CREATE INDEX audit_events_user ON audit_events (user_id);
