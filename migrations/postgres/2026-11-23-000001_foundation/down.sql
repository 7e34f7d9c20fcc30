DROP TABLE audit_events;
DROP TABLE signing_keys;
DROP TABLE users;
DROP TABLE clients;
