#!/usr/bin/env python3
"""Adds N opaque access-token rows to an authmd SQLite database (the growth check)."""
import hashlib
import sqlite3
import sys
import time

db, n = sys.argv[1], int(sys.argv[2])
conn = sqlite3.connect(db)
conn.execute("PRAGMA busy_timeout = 5000")
client = conn.execute("SELECT id FROM clients LIMIT 1").fetchone()[0]
now = int(time.time())
rows = (
    (hashlib.sha256(f"seed-{i}".encode()).hexdigest(), None, None, client, client, None,
     "api.read", "https://api.bench.example", "at_seed", "opaque", now, now + 86400, None)
    for i in range(n)
)
with conn:
    conn.executemany(
        "INSERT INTO access_tokens (id, grant_id, registration_id, client_id, subject, user_id, scope,"
        " audience, prefix, format, issued_at, expires_at, revoked_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
conn.close()
