-- PostgreSQL's migration of this name makes the four indexes partial that SQLite's
-- `2026-12-03-000010_partial_indexes` already did. Migrations keep the same names on both
-- backends, so this one exists and changes nothing.
SELECT 1;
