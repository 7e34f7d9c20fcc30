-- auth.md v0.6 at /agent/identity, on the same registrations as v0.1 at /agent/auth.
-- Which generation a registration was made through: it decides its answers' shapes, whether
-- its identity assertions are single-use (v0.1) or re-exchangeable until they expire (v0.6),
-- and how it is claimed (an emailed one-time code, or a user_code typed on /claim).
ALTER TABLE agent_registrations ADD COLUMN protocol TEXT NOT NULL DEFAULT 'v0.1';
-- The claim grant's polling (RFC 8628 §3.5 semantics): when the agent last polled, and the
-- interval it must keep (raised by 5 s on every slow_down).
ALTER TABLE agent_registrations ADD COLUMN claim_polled_at BIGINT;
ALTER TABLE agent_registrations ADD COLUMN claim_poll_interval BIGINT;
-- email_otp: the v0.1 page shows a code the agent sends back. user_code: the v0.6 code is
-- minted with the attempt, given to the agent, and typed by the signed-in person on /claim.
ALTER TABLE claim_attempts ADD COLUMN ceremony TEXT NOT NULL DEFAULT 'email_otp';
