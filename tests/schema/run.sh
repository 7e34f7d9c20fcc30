#!/usr/bin/env bash
# Schema-driven fuzzing: schemathesis generates requests from the server's own /openapi.json
# and sends them to a running authmd, on SQLite and on PostgreSQL. Any 5xx, a response that
# does not match its documented schema, or the server dying fails the run.
#
# Bounded: SCHEMA_EXAMPLES examples per operation (default 30), one pass per backend, a
# minute or two in all. Needs the debug binary (cargo build) and the packages pinned in
# tests/schema/requirements.txt. PostgreSQL is used when AUTHMD_TEST_POSTGRES_URL is set.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${AUTHMD_BIN:-target/debug/authmd}
EXAMPLES=${SCHEMA_EXAMPLES:-30}
ADMIN=schema-admin-token-0123456789abcdef0123
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  [ -n "${PG_DB:-}" ] && psql "$AUTHMD_TEST_POSTGRES_URL" -qtAc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_against() {
  local backend=$1 url=$2 port
  port=$(free_port)
  local base="http://127.0.0.1:$port"
  AUTHMD_DATABASE__URL="$url" AUTHMD_SERVER__BIND="127.0.0.1:$port" AUTHMD_SERVER__ISSUER="$base" \
    AUTHMD_ADMIN__TOKEN="$ADMIN" AUTHMD_RATE_LIMIT__ENABLED=false AUTHMD_LOG__ACCESS_LOG=false \
    AUTHMD_LOG__FORMAT=json "$BIN" serve 2>"$WORK/$backend.log" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "$base/readyz" >/dev/null
  echo "== schemathesis against $backend ($EXAMPLES examples per operation)"
  # not_a_server_error: no 5xx; response_schema_conformance: answers match the document;
  # status_code_conformance: only documented statuses. The admin token lets the generator
  # reach past authentication on /admin; everything else it must get through or be refused.
  PYTHONPATH=tests/schema SCHEMATHESIS_HOOKS=hooks schemathesis run "$base/openapi.json" \
    --experimental=openapi-3.1 \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance \
    --hypothesis-max-examples "$EXAMPLES" \
    --hypothesis-deadline none \
    --hypothesis-derandomize \
    --hypothesis-suppress-health-check all \
    --request-timeout 10000 \
    --no-color \
    -H "Authorization: Bearer $ADMIN"
  # Still alive and well after it all: no crash.
  kill -0 "$SERVER_PID"
  curl -fsS "$base/healthz" >/dev/null
  # authmd's own error lines mean a bug or an internal failure (an answer with a reference).
  # actix's HTTP parser logs a malformed request at error level too; that one is the client's,
  # and it was answered 400.
  python3 - "$WORK/$backend.log" <<'PY'
import json, sys
errors = []
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if event.get("level") == "ERROR" and event.get("target", "").startswith("authmd"):
        errors.append(line.strip())
if errors:
    print("authmd logged errors under fuzzing:", *errors[:20], sep="\n", file=sys.stderr)
    sys.exit(1)
PY
  kill "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=
}

run_against sqlite "sqlite://$WORK/schema.db"
if [ -n "${AUTHMD_TEST_POSTGRES_URL:-}" ]; then
  PG_DB="authmd_schema_$$"
  psql "$AUTHMD_TEST_POSTGRES_URL" -qtAc "CREATE DATABASE \"$PG_DB\"" >/dev/null
  pg_url=$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$AUTHMD_TEST_POSTGRES_URL" "$PG_DB")
  run_against postgres "$pg_url"
fi
echo "schemathesis: no 5xx, every answer as documented, on every backend"
