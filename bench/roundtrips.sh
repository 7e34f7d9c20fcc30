#!/usr/bin/env bash
# Database statements per request on PostgreSQL, path by path: each one is a round trip
# (diesel sends one statement at a time). authmd runs on a fresh database whose statements
# PostgreSQL logs (`ALTER DATABASE … SET log_statement = 'all'`, this database only); N
# requests of each path are sent one after another, and the statements the log names for the
# database are counted (`statement:` and `execute` lines, not their `DETAIL` lines). Requires
# a PostgreSQL superuser URL (PG_ADMIN_URL) and the server's log file (PG_LOG).
#
#   bench/roundtrips.sh            # prints a Markdown table; N=200 requests per path
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_LOG=${PG_LOG:-$(ls /var/log/postgresql/postgresql-*-main.log | head -n1)}
AUTHMD=${AUTHMD:-target/release/authmd}
DB=authmd_roundtrips
WORK=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

psql "$PG_ADMIN_URL" -qtAc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql "$PG_ADMIN_URL" -qtAc "CREATE DATABASE $DB" >/dev/null
URL="${PG_ADMIN_URL%/*}/$DB"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
# The same configuration as bench/run.sh: rate limiter on, limits raised.
sed -n '/cat > "\$WORK\/authmd.toml" <<TOML$/,/^TOML$/p' bench/run.sh | sed '1d;$d' |
  sed "s|\$port|$PORT|g; s|\$db_url|$URL|; s|\$RESOURCE|https://api.bench.example|" > "$WORK/authmd.toml"
created=$("$AUTHMD" --config "$WORK/authmd.toml" client create --name bench \
  --grant-type client_credentials --scope api.read --introspect --json)
ID=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
SECRET=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
"$AUTHMD" --config "$WORK/authmd.toml" serve > "$WORK/authmd.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null && break; sleep 0.1; done
psql "$PG_ADMIN_URL" -qtAc "ALTER DATABASE $DB SET log_statement = 'all'" >/dev/null
# Connections opened before the setting keep the old one: restart so every connection logs.
kill "$PID"; wait "$PID" 2>/dev/null || true
"$AUTHMD" --config "$WORK/authmd.toml" serve > "$WORK/authmd.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null && break; sleep 0.1; done

logged() { grep -cE "@$DB LOG:  (statement|execute)" "$PG_LOG" || true; }
token() { curl -fsS -u "$ID:$SECRET" -d grant_type=client_credentials -d scope=api.read "$BASE/oauth2/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'; }
VALID=$(token)

count() { # label, then a command run N times
  local label=$1; shift
  "$@" >/dev/null # warm: the first use may prepare statements or fill caches
  sleep 0.3
  local before after
  before=$(logged)
  for _ in $(seq 1 "$N"); do "$@" >/dev/null; done
  sleep 0.5
  after=$(logged)
  printf '| %s | %s |\n' "$label" "$(python3 -c "print(round(($after - $before) / $N, 2))")"
}

cc() { curl -fsS -u "$ID:$SECRET" -d grant_type=client_credentials -d scope=api.read "$BASE/oauth2/token"; }
introspect() { curl -fsS -u "$ID:$SECRET" -d "token=$VALID" "$BASE/oauth2/introspect"; }
revoke_new() { local t; t=$(token); curl -fsS -u "$ID:$SECRET" -d "token=$t" "$BASE/oauth2/revoke"; }
register() { curl -fsS -H 'content-type: application/json' -d '{"type":"anonymous"}' "$BASE/agent/auth"; }
assertion() { curl -fsS -H 'content-type: application/json' -d '{"type":"anonymous","requested_credential_type":"identity_assertion"}' "$BASE/agent/auth" | python3 -c 'import json,sys; print(json.load(sys.stdin)["credential"])'; }
jwt_bearer() { curl -fsS -d grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer -d "assertion=$(assertion)" "$BASE/oauth2/token"; }
refresh() {
  local rt
  rt=$(curl -fsS -d grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer -d "assertion=$(assertion)" "$BASE/oauth2/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')
  curl -fsS -d grant_type=refresh_token -d "refresh_token=$rt" "$BASE/oauth2/token"
}

echo "| path (PostgreSQL, $N requests one at a time) | statements per request |"
echo "|---|---:|"
count "token client_credentials" cc
count "introspect valid (one request at a time: no batching)" introspect
count "agent/auth anonymous" register
count "identity assertion registration + JWT-bearer exchange" jwt_bearer
count "… + refresh rotation" refresh
count "token client_credentials + revocation" revoke_new
psql "$PG_ADMIN_URL" -qtAc "ALTER DATABASE $DB RESET log_statement" >/dev/null
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
psql "$PG_ADMIN_URL" -qtAc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
