#!/usr/bin/env bash
# CPU seconds per 1,000 runs (per process: agents, Redis, PostgreSQL backends, client), commits
# and Redis commands per run, under the 16-client closed loop and at 100 runs/s, on PostgreSQL
# (bench/cost_per_run.py). Comparable on a busy machine, where throughput is not. Starts
# cli-trading on a private Redis (append-only file, fsync every second, as the embedded one) and a
# fresh database, warms up, measures, stops. N (closed-loop runs, 3000) and RATE_S (seconds at
# 100 runs/s, 10; 0 skips it) may be set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA=$(mktemp -d)
RPORT=${COST_REDIS_PORT:-6391}
DB=ct_cost
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$DATA" --appendonly yes --appendfsync everysec \
  --save "" --daemonize no --loglevel warning >"$DATA/redis.out" 2>&1 &
RPID=$!
export REDIS_URL=redis://127.0.0.1:$RPORT/0
export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/$DB
export ADMIN_TOKEN=bench-admin-token-0123456789abcdef
export DAILY_TARGET_PCT=1000 DAILY_LOSS_LIMIT_PCT=99
psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
for _ in $(seq 1 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
.venv/bin/cli-trading up --data-dir "$DATA" >"$DATA/up.out" 2>&1 &
UP=$!
trap 'kill -INT $UP; wait $UP; kill $RPID; wait $RPID; rm -rf "$DATA"' EXIT
for _ in $(seq 1 120); do curl -sf http://127.0.0.1:7005/health >/dev/null && curl -sf http://127.0.0.1:7001/health >/dev/null && break; sleep 1; done
# warm-up, not measured: the first batches prepare statements and fill caches
$PY bench/pipeline_driver.py --redis "$REDIS_URL" -n 1000 -c 16 >/dev/null
$PY bench/cost_per_run.py --up-pid "$UP" --redis "$REDIS_URL" --db $DB -- -n "${N:-3000}" -c 16
if [ "${RATE_S:-10}" != 0 ]; then
  $PY bench/cost_per_run.py --up-pid "$UP" --redis "$REDIS_URL" --db $DB -- --rate 100 --seconds "${RATE_S:-10}"
fi
