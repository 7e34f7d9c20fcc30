DROP TABLE device_codes;
ALTER TABLE authorization_codes DROP COLUMN auth_time;
ALTER TABLE authorization_codes DROP COLUMN nonce;
