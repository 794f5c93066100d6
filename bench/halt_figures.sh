#!/usr/bin/env bash
# The halt figures alone, on one database: start `cli-trading up` (DB=postgresql: a fresh ct_bench
# database on the machine's server and Redis DB 15; DB=sqlite: the single-machine run, embedded
# Redis), then halts sent with the runbook's curl on a new connection each, HALTS (100) under the
# saturating closed loop and HALTS/2 under 100 runs/s (bench/halt_latency.py), print their JSON.
# MODE=direct (plain HTTP to 7001), tls (the agents serve HTTPS themselves: TLS_CERT_FILE, a
# self-signed certificate) or edge (`up --edge`: the halts through nginx on https://127.0.0.1:8443,
# the load direct). `bench/run.sh` runs the whole benchmark on PostgreSQL. Record the figures in
# docs/benchmarks.md.
# REDIS=server (DB 15 of the machine's Redis, as configured there: often without an append-only
# file) or embedded (`up`'s own redis-server: append-only file, fsync every second, like the
# compose Redis); the default follows DB as above. The halt's answer waits for one Redis round
# trip, and a Redis writing its append-only file to a busy disk stalls now and then (LATENCY
# LATEST: aof-write): compare the two databases on the same kind of Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DB=${DB:-postgresql}
MODE=${MODE:-direct}
HALTS=${HALTS:-100}
DATA=$(mktemp -d)
export ADMIN_TOKEN=bench-admin-token-0123456789abcdef
export DAILY_TARGET_PCT=1000 DAILY_LOSS_LIMIT_PCT=99  # the pipeline, not the day's PnL
if [ "$DB" = postgresql ]; then
  REDIS=${REDIS:-server}
  export DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/ct_bench}
  psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS ct_bench WITH (FORCE)" -c "CREATE DATABASE ct_bench"
else
  REDIS=${REDIS:-embedded}
  unset DATABASE_URL
fi
case "$REDIS" in
  server)
    export REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/15}
    redis-cli -u "$REDIS_URL" FLUSHDB >/dev/null ;;
  embedded) unset REDIS_URL ;;
  *) echo "REDIS must be server or embedded" >&2; exit 2 ;;
esac
URL=http://127.0.0.1:7001
HALT_URL=$URL
UP_ARGS=()
case "$MODE" in
  direct) ;;
  tls)
    $PY -c "from pathlib import Path; from cli_trading.ops.tls import self_signed; \
self_signed(Path('$DATA/cert.pem'), Path('$DATA/key.pem'), hosts=['127.0.0.1'])"
    export TLS_CERT_FILE=$DATA/cert.pem TLS_KEY_FILE=$DATA/key.pem
    URL=https://127.0.0.1:7001 HALT_URL=https://127.0.0.1:7001 ;;
  # the edge allows 2 admin requests/s (burst 10): a halt and its unhalt every 1.1 s stay under it
  edge) UP_ARGS=(--edge) HALT_URL=https://127.0.0.1:${EDGE_PORT:-8443} PAUSE=1.1 ;;
  *) echo "MODE must be direct, tls or edge" >&2; exit 2 ;;
esac
.venv/bin/cli-trading up --data-dir "$DATA" --speed "${SPEED:-1}" "${UP_ARGS[@]}" >"$DATA/up.out" 2>&1 &
UP=$!
trap 'kill -INT $UP; wait $UP' EXIT
for _ in $(seq 1 90); do
  curl -skf "${URL/7001/7005}/health" >/dev/null && curl -skf "$URL/health" >/dev/null \
    && curl -sk -o /dev/null "$HALT_URL/health" && break
  sleep 1
done
REDIS_AT=${REDIS_URL:-$($PY -c "import json; print(json.load(open('$DATA/runtime.json'))['redisUrl'])")}
echo "redis: $REDIS, appendonly $(redis-cli -u "$REDIS_AT" CONFIG GET appendonly | tail -1)" >&2
$PY bench/pipeline_driver.py --url "$URL" --redis "$REDIS_AT" -n 500 -c 32 >/dev/null  # warm-up
$PY bench/halt_latency.py --url "$URL" --halt-url "$HALT_URL" --redis "$REDIS_AT" --token "$ADMIN_TOKEN" --halts "$HALTS" \
  --pause "${PAUSE:-0.3}"
$PY bench/halt_latency.py --url "$URL" --halt-url "$HALT_URL" --redis "$REDIS_AT" --token "$ADMIN_TOKEN" \
  --halts "$((HALTS / 2))" --rate 100 --pause "${PAUSE:-0.3}"
