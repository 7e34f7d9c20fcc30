-- Each audit row names the request that made it (the X-Request-Id of the answer and of the
-- request's log lines), so an operator can go from a row to the logs.
ALTER TABLE audit_events ADD COLUMN request_id TEXT;
