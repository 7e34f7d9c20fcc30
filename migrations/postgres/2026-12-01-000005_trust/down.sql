DROP TABLE server_secrets;
DROP INDEX grants_provider;
DROP INDEX personal_tokens_parent;
ALTER TABLE users DROP COLUMN disabled_at;
ALTER TABLE grants DROP COLUMN provider_sub;
ALTER TABLE grants DROP COLUMN provider_iss;
ALTER TABLE personal_tokens DROP COLUMN parent_id;
ALTER TABLE personal_tokens DROP COLUMN expires_at;
