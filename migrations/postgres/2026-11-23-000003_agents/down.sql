DROP TABLE rate_limit_windows;
DROP TABLE delegations;
DROP TABLE seen_jtis;
DROP TABLE claim_attempts;
DROP TABLE api_keys;
DROP TABLE agent_registrations;
