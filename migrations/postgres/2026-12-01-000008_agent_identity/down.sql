ALTER TABLE claim_attempts DROP COLUMN ceremony;
ALTER TABLE agent_registrations DROP COLUMN claim_poll_interval;
ALTER TABLE agent_registrations DROP COLUMN claim_polled_at;
ALTER TABLE agent_registrations DROP COLUMN protocol;
