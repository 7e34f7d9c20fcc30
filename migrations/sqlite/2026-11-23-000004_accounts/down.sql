DROP TABLE idempotency_keys;
DROP TABLE personal_tokens;
