#!/usr/bin/env bash
# authmd's hot paths measured side by side with node-oidc-provider, on this machine, in one run.
#
#   bench/run.sh                      # SQLite and PostgreSQL, plus the 1M-token growth check
#   BACKENDS=sqlite GROWTH=0 bench/run.sh
#
# Knobs (environment): DURATION (s per run, 15), WARMUP (s, 3), CONC (32), ROUNDS (3),
# BACKENDS ("sqlite postgres"), GROWTH (1), INSTANCES (1: on PostgreSQL, also measure two
# instances on one database), PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/postgres), OUT
# (bench/results) and STAMP (the UTC date): the results files. For an A/B of two builds:
# AUTHMD_BIN (the server binary measured, nothing built; by default the one built here) and
# PEER=0 (skip node-oidc-provider).
# Every process is started here and stopped by its pid; all traffic goes to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH="$ROOT/bench"
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CONC=${CONC:-32}
ROUNDS=${ROUNDS:-3}
INSTANCES=${INSTANCES:-1}
BACKENDS=${BACKENDS:-"sqlite postgres"}
GROWTH=${GROWTH:-1}
PEER=${PEER:-1}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
STAMP=${STAMP:-$(date -u +%Y-%m-%d)}
OUT=${OUT:-"$BENCH/results"}
mkdir -p "$OUT"
WORK=$(mktemp -d)
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT

log() { echo "[bench] $*" >&2; }

# --- tools -------------------------------------------------------------------------------------
command -v oha >/dev/null || cargo install oha --locked
if [ ! -d "$BENCH/node_modules/oidc-provider" ]; then
  (cd "$BENCH" && npm ci --no-audit --no-fund)
fi
# With AUTHMD_BIN given, the load generators already built are used as they are.
[ -n "${AUTHMD_BIN:-}" ] || cargo build --release --bin authmd --example bench_jwt_bearer --example bench_flows
AUTHMD=${AUTHMD_BIN:-"$ROOT/target/release/authmd"}
LOADGEN="$ROOT/target/release/examples/bench_jwt_bearer"
FLOWS="$ROOT/target/release/examples/bench_flows"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_up() {
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  log "server at $1 did not come up"; return 1
}

peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }

RESOURCE="https://api.bench.example"
CLIENT_SECRET=""

# --- servers -----------------------------------------------------------------------------------
start_authmd() { # backend -> sets AUTHMD_URL AUTHMD_PID AUTHMD_CLIENT AUTHMD_SECRET AUTHMD_DB
  local backend=$1 port db_url
  port=$(free_port)
  if [ "$backend" = sqlite ]; then
    AUTHMD_DB="$WORK/authmd.db"
    rm -f "$AUTHMD_DB"*
    db_url="sqlite://$AUTHMD_DB"
  else
    local name="authmd_bench"
    psql "$PG_ADMIN_URL" -qtAc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
    psql "$PG_ADMIN_URL" -qtAc "CREATE DATABASE $name" >/dev/null
    AUTHMD_DB="${PG_ADMIN_URL%/*}/$name"
    db_url="$AUTHMD_DB"
  fi
  cat > "$WORK/authmd.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
issuer = "http://127.0.0.1:$port"
resources = ["$RESOURCE"]
[database]
url = "$db_url"
[log]
level = "warn"
access_log = false
[rate_limit]
# On, as every deployment runs it: each request pays the limiter's reads and counter writes.
# The limits are raised so that one load generator on one address is never refused.
enabled = true
agent_auth_per_ip = 1000000000
agent_auth_global = 1000000000
claim_per_ip = 1000000000
claim_global = 1000000000
otp_per_ip = 1000000000
otp_global = 1000000000
register_per_ip = 1000000000
register_global = 1000000000
tokens_per_ip = 1000000000
tokens_global = 1000000000
signup_per_ip = 1000000000
signup_global = 1000000000
login_failures_per_account = 1000000000
login_failures_per_ip = 1000000000
client_auth_failures = 1000000000
[admin]
token = "bench-admin-token-0123456789abcdefgh"
[oauth.cimd]
# The flows load generator's metadata document is served from loopback over http.
allow_private_addresses = true
TOML
  local created
  created=$("$AUTHMD" --config "$WORK/authmd.toml" client create --name bench \
    --grant-type client_credentials --scope api.read --introspect --json)
  AUTHMD_CLIENT=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
  AUTHMD_SECRET=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
  # For the flows load generator: a person, a code-flow client, a device-flow client.
  echo "$FLOWS_PASSWORD" | "$AUTHMD" --config "$WORK/authmd.toml" user create \
    --email bench@example.com --password-stdin > /dev/null
  created=$("$AUTHMD" --config "$WORK/authmd.toml" client create --name "bench code" \
    --redirect-uri "$FLOWS_REDIRECT" --scope api.read --json)
  FLOWS_CLIENT=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
  FLOWS_SECRET=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
  created=$("$AUTHMD" --config "$WORK/authmd.toml" client create --name "bench device" \
    --grant-type urn:ietf:params:oauth:grant-type:device_code --scope api.read --json)
  FLOWS_DEVICE_CLIENT=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
  FLOWS_DEVICE_SECRET=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
  "$AUTHMD" --config "$WORK/authmd.toml" serve > "$WORK/authmd.log" 2>&1 &
  AUTHMD_PID=$!
  PIDS+=("$AUTHMD_PID")
  AUTHMD_URL="http://127.0.0.1:$port"
  wait_up "$AUTHMD_URL/healthz"
}

# A client metadata document on loopback, for the flows load generator's document client.
FLOWS_PASSWORD="bench-password-$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')"
FLOWS_REDIRECT="http://127.0.0.1:9/callback"
DOC_PORT=$(free_port)
CIMD_URL="http://127.0.0.1:$DOC_PORT/client.json"
mkdir -p "$WORK/docs"
cat > "$WORK/docs/client.json" <<JSON
{"client_id": "$CIMD_URL", "client_name": "bench document client", "redirect_uris": ["$FLOWS_REDIRECT"],
 "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none"}
JSON
python3 -m http.server "$DOC_PORT" --bind 127.0.0.1 --directory "$WORK/docs" > /dev/null 2>&1 &
PIDS+=("$!")

start_peer() { # -> PEER_URL PEER_PID PEER_SECRET
  local port
  port=$(free_port)
  PEER_SECRET="peer-$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  PORT=$port CLIENT_ID=bench CLIENT_SECRET="$PEER_SECRET" RESOURCE="$RESOURCE" \
    node "$BENCH/peer.mjs" > "$WORK/peer.log" 2>&1 &
  PEER_PID=$!
  PIDS+=("$PEER_PID")
  PEER_URL="http://127.0.0.1:$port"
  wait_up "$PEER_URL/.well-known/openid-configuration"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

start_second_authmd() { # -> AUTHMD2_URL AUTHMD2_PID: another instance on the same database
  local port
  port=$(free_port)
  sed "s/^bind = .*/bind = \"127.0.0.1:$port\"/" "$WORK/authmd.toml" > "$WORK/authmd2.toml"
  "$AUTHMD" --config "$WORK/authmd2.toml" serve > "$WORK/authmd2.log" 2>&1 &
  AUTHMD2_PID=$!
  PIDS+=("$AUTHMD2_PID")
  AUTHMD2_URL="http://127.0.0.1:$port"
  wait_up "$AUTHMD2_URL/healthz"
}

# --- requests (the bodies are checked against the server's API by `cargo test`) ----------------
basic() { printf '%s' "$1:$2" | base64 -w0; }

token_of() { # url path auth -> access token
  curl -fsS -X POST "$1$2" -H "Authorization: Basic $3" \
    -H 'Content-Type: application/x-www-form-urlencoded' --data 'grant_type=client_credentials&scope=api.read' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

introspect_active() { # url path auth token -> true/false
  curl -fsS -X POST "$1$2" -H "Authorization: Basic $3" \
    -H 'Content-Type: application/x-www-form-urlencoded' --data "token=$4" |
    python3 -c 'import json,sys; print(str(json.load(sys.stdin)["active"]).lower())'
}

revoke() { # url path auth token
  curl -fsS -o /dev/null -X POST "$1$2" -H "Authorization: Basic $3" \
    -H 'Content-Type: application/x-www-form-urlencoded' --data "token=$4"
}

# --- measuring -------------------------------------------------------------------------------
measure() { # label server pid method url content-type body [auth]
  local label=$1 server=$2 pid=$3 method=$4 url=$5 ctype=$6 body=$7 auth=${8:-}
  local args=(-c "$CONC" --no-tui --output-format json -m "$method")
  [ -n "$ctype" ] && args+=(-T "$ctype")
  [ -n "$body" ] && args+=(-d "$body")
  [ -n "$auth" ] && args+=(-H "Authorization: Basic $auth")
  oha -z "${WARMUP}s" "${args[@]}" "$url" > /dev/null
  local t0 p0 t1 p1
  t0=$(busy_ticks); p0=$(proc_ticks "$pid")
  oha -z "${DURATION}s" "${args[@]}" "$url" > "$WORK/oha.json"
  t1=$(busy_ticks); p1=$(proc_ticks "$pid")
  python3 "$BENCH/collect.py" "$WORK/oha.json" "$label" "$server" "$BACKEND" "$(peak_rss_kib "$pid")" \
    "$((p1 - p0))" "$((t1 - t0))" "$DURATION" >> "$RESULTS"
  log "$(tail -n1 "$RESULTS")"
}

measure_pair() { # label url1 url2 content-type body auth: half the concurrency on each instance
  local label=$1 url1=$2 url2=$3 ctype=$4 body=$5 auth=$6 half=$((CONC / 2))
  local args=(-c "$half" --no-tui --output-format json -m POST -T "$ctype" -d "$body" -H "Authorization: Basic $auth")
  oha -z "${WARMUP}s" "${args[@]}" "$url1" > /dev/null &
  local warming=$!
  oha -z "${WARMUP}s" "${args[@]}" "$url2" > /dev/null
  wait "$warming"
  local t0 p0 t1 p1
  t0=$(busy_ticks); p0=$(( $(proc_ticks "$AUTHMD_PID") + $(proc_ticks "$AUTHMD2_PID") ))
  oha -z "${DURATION}s" "${args[@]}" "$url1" > "$WORK/oha1.json" &
  local first=$!
  oha -z "${DURATION}s" "${args[@]}" "$url2" > "$WORK/oha2.json"
  wait "$first"
  t1=$(busy_ticks); p1=$(( $(proc_ticks "$AUTHMD_PID") + $(proc_ticks "$AUTHMD2_PID") ))
  python3 "$BENCH/collect.py" --pair "$WORK/oha1.json" "$WORK/oha2.json" "$label" "$BACKEND" \
    "$(( $(peak_rss_kib "$AUTHMD_PID") + $(peak_rss_kib "$AUTHMD2_PID") ))" \
    "$((p1 - p0))" "$((t1 - t0))" "$DURATION" >> "$RESULTS"
  log "$(tail -n1 "$RESULTS")"
}

bench_two_instances() { # one database, two servers, the load split between them
  start_authmd "$BACKEND"
  start_second_authmd
  local auth valid form=application/x-www-form-urlencoded
  auth=$(basic "$AUTHMD_CLIENT" "$AUTHMD_SECRET")
  valid=$(token_of "$AUTHMD_URL" /oauth2/token "$auth")
  [ "$(introspect_active "$AUTHMD2_URL" /oauth2/introspect "$auth" "$valid")" = true ] || { log "second instance does not see the first's token"; exit 1; }
  measure_pair "2 instances: token client_credentials" "$AUTHMD_URL/oauth2/token" "$AUTHMD2_URL/oauth2/token" "$form" 'grant_type=client_credentials&scope=api.read' "$auth"
  measure_pair "2 instances: introspect valid" "$AUTHMD_URL/oauth2/introspect" "$AUTHMD2_URL/oauth2/introspect" "$form" "token=$valid" "$auth"
  stop "$AUTHMD2_PID"
  stop "$AUTHMD_PID"
}

bench_shared() { # server url pid auth token-path introspect-path revoke-path
  local server=$1 url=$2 pid=$3 auth=$4 tpath=$5 ipath=$6 rpath=$7
  local valid revoked
  valid=$(token_of "$url" "$tpath" "$auth")
  revoked=$(token_of "$url" "$tpath" "$auth")
  revoke "$url" "$rpath" "$auth" "$revoked"
  # Correct answers before any measurement.
  [ "$(introspect_active "$url" "$ipath" "$auth" "$valid")" = true ] || { log "$server: valid token not active"; exit 1; }
  [ "$(introspect_active "$url" "$ipath" "$auth" "$revoked")" = false ] || { log "$server: revoked token active"; exit 1; }
  local form=application/x-www-form-urlencoded
  measure "token client_credentials" "$server" "$pid" POST "$url$tpath" "$form" 'grant_type=client_credentials&scope=api.read' "$auth"
  measure "introspect valid" "$server" "$pid" POST "$url$ipath" "$form" "token=$valid" "$auth"
  measure "introspect unknown" "$server" "$pid" POST "$url$ipath" "$form" "token=at_unknownAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$auth"
  measure "introspect revoked" "$server" "$pid" POST "$url$ipath" "$form" "token=$revoked" "$auth"
}

bench_authmd_only() {
  measure "healthz" authmd "$AUTHMD_PID" GET "$AUTHMD_URL/healthz" "" ""
  measure "agent/auth anonymous" authmd "$AUTHMD_PID" POST "$AUTHMD_URL/agent/auth" application/json '{"type":"anonymous"}'
  "$LOADGEN" "$AUTHMD_URL" "$CONC" "$DURATION" | while read -r line; do
    python3 "$BENCH/collect.py" --loadgen "$line" authmd "$BACKEND" "$(peak_rss_kib "$AUTHMD_PID")" >> "$RESULTS"
  done
  BENCH_EMAIL=bench@example.com BENCH_PASSWORD="$FLOWS_PASSWORD" BENCH_REDIRECT="$FLOWS_REDIRECT" \
  BENCH_CLIENT="$FLOWS_CLIENT" BENCH_SECRET="$FLOWS_SECRET" BENCH_CIMD_URL="$CIMD_URL" \
  BENCH_DEVICE_CLIENT="$FLOWS_DEVICE_CLIENT" BENCH_DEVICE_SECRET="$FLOWS_DEVICE_SECRET" \
    "$FLOWS" "$AUTHMD_URL" "$CONC" "$DURATION" | while read -r line; do
    python3 "$BENCH/collect.py" --loadgen "$line" authmd "$BACKEND" "$(peak_rss_kib "$AUTHMD_PID")" >> "$RESULTS"
  done
}

seed_tokens() { # add 1,000,000 access tokens straight into the database
  if [ "$BACKEND" = sqlite ]; then
    python3 "$BENCH/seed.py" "$AUTHMD_DB" 1000000
  else
    psql "$AUTHMD_DB" -qtAc "INSERT INTO access_tokens (id, grant_id, registration_id, client_id, subject, user_id, scope, audience, prefix, format, issued_at, expires_at, revoked_at)
      SELECT md5(g::text || 'a') || md5(g::text || 'b'), NULL, NULL, '$AUTHMD_CLIENT', '$AUTHMD_CLIENT', NULL, 'api.read', '$RESOURCE', 'at_seed', 'opaque',
             extract(epoch from now())::bigint, extract(epoch from now())::bigint + 86400, NULL
      FROM generate_series(1, 1000000) g" >/dev/null
    psql "$AUTHMD_DB" -qtAc "ANALYZE access_tokens" >/dev/null
  fi
}

db_bytes() {
  if [ "$BACKEND" = sqlite ]; then
    du -cb "$AUTHMD_DB"* | tail -n1 | cut -f1
  else
    psql "$AUTHMD_DB" -qtAc "SELECT pg_database_size(current_database())"
  fi
}

for BACKEND in $BACKENDS; do
  log "backend: $BACKEND"
  for round in $(seq 1 "$ROUNDS"); do
    start_authmd "$BACKEND"
    bench_shared authmd "$AUTHMD_URL" "$AUTHMD_PID" "$(basic "$AUTHMD_CLIENT" "$AUTHMD_SECRET")" /oauth2/token /oauth2/introspect /oauth2/revoke
    bench_authmd_only
    stop "$AUTHMD_PID"
    if [ "$PEER" = 1 ]; then
      start_peer
      bench_shared peer "$PEER_URL" "$PEER_PID" "$(basic bench "$PEER_SECRET")" /token /token/introspection /token/revocation
      stop "$PEER_PID"
    fi
    if [ "$BACKEND" = postgres ] && [ "$INSTANCES" = 1 ]; then
      bench_two_instances
    fi
    log "round $round of $ROUNDS done"
  done
  if [ "$GROWTH" = 1 ]; then
    start_authmd "$BACKEND"
    before=$(db_bytes)
    seed_tokens
    after=$(db_bytes)
    echo "{\"growth\": true, \"backend\": \"$BACKEND\", \"db_bytes_before\": $before, \"db_bytes_after\": $after, \"tokens_added\": 1000000}" >> "$RESULTS"
    stop "$AUTHMD_PID"
    # Restart on the seeded database so caches start cold, then measure again.
    "$AUTHMD" --config "$WORK/authmd.toml" serve > "$WORK/authmd.log" 2>&1 &
    AUTHMD_PID=$!
    PIDS+=("$AUTHMD_PID")
    wait_up "$AUTHMD_URL/healthz"
    auth=$(basic "$AUTHMD_CLIENT" "$AUTHMD_SECRET")
    valid=$(token_of "$AUTHMD_URL" /oauth2/token "$auth")
    measure "growth: token client_credentials" authmd "$AUTHMD_PID" POST "$AUTHMD_URL/oauth2/token" application/x-www-form-urlencoded 'grant_type=client_credentials&scope=api.read' "$auth"
    measure "growth: introspect valid" authmd "$AUTHMD_PID" POST "$AUTHMD_URL/oauth2/introspect" application/x-www-form-urlencoded "token=$valid" "$auth"
    stop "$AUTHMD_PID"
  fi
done

cp "$RESULTS" "$OUT/$STAMP.jsonl"
python3 "$BENCH/report.py" "$OUT/$STAMP.jsonl" "$CONC" "$DURATION" "$ROUNDS" > "$OUT/$STAMP.md"
python3 -c 'import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; json.dump(rows, open(sys.argv[2],"w"), indent=1)' "$OUT/$STAMP.jsonl" "$OUT/$STAMP.json"
rm -f "$OUT/$STAMP.jsonl"
log "results: $OUT/$STAMP.md and $OUT/$STAMP.json"
