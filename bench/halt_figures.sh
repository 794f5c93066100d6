#!/usr/bin/env bash
# The halt figures of every deployment in one go, then a table (bench/halt_table.py). For each
# deployment: start `cli-trading up`, warm up, then halts sent with the runbook's curl on a new
# connection each, HALTS (100) under the saturating closed loop and HALTS/2 under 100 runs/s
# (bench/halt_latency.py; its JSON lines go to stderr and to $OUT, default a temporary file).
#
# DEPLOYMENTS (default: all six) is a list of DB:MODE —
#   DB   postgresql (a fresh ct_bench database on the machine's server, Redis DB 15) or sqlite
#        (the single-machine run, embedded Redis);
#   MODE direct (plain HTTP to 7001), tls (the agents serve HTTPS themselves: TLS_CERT_FILE, a
#        self-signed certificate; the load over TLS too) or edge (`up --edge`: the load direct, and
#        the halts take turns between direct and nginx on https://127.0.0.1:8443, so the edge's
#        extra is measured against direct in the same run, under the same load).
# DB=… MODE=… (the older form) measure that one deployment.
# REDIS=server (DB 15 of the machine's Redis, as configured there: often without an append-only
# file) or embedded (`up`'s own redis-server: append-only file, fsync every second, like the
# compose Redis); the default follows DB as above. The halt's answer waits for one Redis round
# trip, and a Redis writing its append-only file to a busy disk stalls now and then (LATENCY
# LATEST: aof-write): compare the two databases on the same kind of Redis.
# `bench/run.sh` runs the whole benchmark on PostgreSQL. Record the figures in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HALTS=${HALTS:-100}
ALL="postgresql:direct postgresql:tls postgresql:edge sqlite:direct sqlite:tls sqlite:edge"
if [ -n "${DB:-}${MODE:-}" ]; then ALL="${DB:-postgresql}:${MODE:-direct}"; fi
DEPLOYMENTS=${DEPLOYMENTS:-$ALL}
OUT=${OUT:-$(mktemp --suffix=.jsonl)}
export ADMIN_TOKEN=bench-admin-token-0123456789abcdef
export DAILY_TARGET_PCT=1000 DAILY_LOSS_LIMIT_PCT=99  # the pipeline, not the day's PnL

# One deployment, in a subshell of its own (its environment, its `up`, stopped on the way out).
measure() (
  local db=$1 mode=$2 data redis
  data=$(mktemp -d)
  if [ "$db" = postgresql ]; then
    redis=${REDIS:-server}
    export DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/ct_bench}
    psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS ct_bench WITH (FORCE)" -c "CREATE DATABASE ct_bench"
  else
    redis=${REDIS:-embedded}
    unset DATABASE_URL
  fi
  case "$redis" in
    server)
      export REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/15}
      redis-cli -u "$REDIS_URL" FLUSHDB >/dev/null ;;
    embedded) unset REDIS_URL ;;
    *) echo "REDIS must be server or embedded" >&2; exit 2 ;;
  esac
  local url=http://127.0.0.1:7001 up_args=() halt_urls=()
  case "$mode" in
    direct) halt_urls=(--halt-url "$url") ;;
    tls)
      $PY -c "from pathlib import Path; from cli_trading.ops.tls import self_signed; \
self_signed(Path('$data/cert.pem'), Path('$data/key.pem'), hosts=['127.0.0.1'])"
      export TLS_CERT_FILE=$data/cert.pem TLS_KEY_FILE=$data/key.pem
      url=https://127.0.0.1:7001 halt_urls=(--halt-url "$url") ;;
    # the edge allows 2 admin requests/s (burst 10): the unhalts go direct, and an edge halt comes
    # every other turn (≥ 0.6 s apart)
    edge) up_args=(--edge) halt_urls=(--halt-url "$url" --halt-url "https://127.0.0.1:${EDGE_PORT:-8443}") ;;
    *) echo "MODE must be direct, tls or edge" >&2; exit 2 ;;
  esac
  # TLS paths: curl's own cost of a new TLS connection, measured against openssl s_server (C, doing
  # nothing else) before each halt: the part of the extra over direct that no server can remove
  local probes=() floor=
  if [ "$mode" != direct ]; then
    local floor_port
    floor_port=$($PY -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    $PY -c "from pathlib import Path; from cli_trading.ops.tls import self_signed; \
self_signed(Path('$data/floor.pem'), Path('$data/floor.key'), hosts=['127.0.0.1'])"
    openssl s_server -accept "127.0.0.1:$floor_port" -cert "$data/floor.pem" -key "$data/floor.key" -www -quiet \
      </dev/null >/dev/null 2>&1 &
    floor=$! probes=(--probe-url "https://127.0.0.1:$floor_port/")
  fi
  .venv/bin/cli-trading up --data-dir "$data" --speed "${SPEED:-1}" "${up_args[@]}" >"$data/up.out" 2>&1 &
  local up=$!
  trap 'kill -INT '"$up"'; wait '"$up"' || true; [ -z "'"$floor"'" ] || kill "'"$floor"'"' EXIT
  for _ in $(seq 1 90); do
    curl -skf "${url/7001/7005}/health" >/dev/null && curl -skf "$url/health" >/dev/null \
      && curl -sk -o /dev/null "${halt_urls[-1]}/health" && break
    sleep 1
  done
  local redis_at=${REDIS_URL:-$($PY -c "import json; print(json.load(open('$data/runtime.json'))['redisUrl'])")}
  echo "== $db $mode: redis $redis, appendonly $(redis-cli -u "$redis_at" CONFIG GET appendonly | tail -1)" >&2
  $PY bench/pipeline_driver.py --url "$url" --redis "$redis_at" -n 500 -c 32 >/dev/null  # warm-up
  local args=(--url "$url" "${halt_urls[@]}" ${probes[@]+"${probes[@]}"} --redis "$redis_at" --token "$ADMIN_TOKEN" --pause "${PAUSE:-0.3}")
  { $PY bench/halt_latency.py "${args[@]}" --halts "$HALTS"
    $PY bench/halt_latency.py "${args[@]}" --halts "$((HALTS / 2))" --rate 100
  } | $PY -c "import json, sys
for line in sys.stdin:
    print(json.dumps({'db': '$db', 'redis': '$redis', 'mode': '$mode', **json.loads(line)}), flush=True)" \
    | tee -a "$OUT" >&2
)

echo "results: $OUT" >&2
# how busy the machine was before this script added anything (1, 5, 15-minute load averages)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for d in $DEPLOYMENTS; do
  measure "${d%%:*}" "${d##*:}"
done
echo "machine load average before the benchmark: $LOAD_BEFORE ($(nproc) cores)"
$PY bench/halt_table.py "$OUT"
