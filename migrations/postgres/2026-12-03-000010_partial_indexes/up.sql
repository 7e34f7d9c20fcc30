-- SQLite's migration of this name makes four indexes partial (`WHERE … IS NOT NULL`), so that a
-- client_credentials token writes four index entries fewer on its single writer. PostgreSQL
-- keeps full indexes: the revocation by grant looks up `grant_id = ANY($1)`, from which a
-- generic plan cannot prove `grant_id IS NOT NULL`, so a partial index could turn it into a
-- scan; and its writes are not serialized on one thread. Migrations keep the same names on
-- both backends, so this one exists and changes nothing.
SELECT 1;
