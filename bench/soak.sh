#!/usr/bin/env bash
# Soak: cli-trading up (embedded Redis, PostgreSQL database ct_soak) on ports PORT_BASE..+6,
# manual orders at RATE runs/s for SECONDS (30 minutes by default), memory sampled throughout
# (bench/soak.py). Prints the driver's JSON line and the memory summary. Record both in
# docs/benchmarks.md. NICE=10 runs everything at lower priority on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SECONDS_=${SECONDS_:-1800}
RATE=${RATE:-100}
PORT_BASE=${PORT_BASE:-35501}
DATA=$(mktemp -d)
unset REDIS_URL
export DATABASE_URL=${SOAK_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/ct_soak}
export ADMIN_TOKEN=soak-admin-token-0123456789abcdef0123
export DAILY_TARGET_PCT=1000 DAILY_LOSS_LIMIT_PCT=99  # the soak measures memory, not the day's PnL
psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS ct_soak WITH (FORCE)" -c "CREATE DATABASE ct_soak"
nice -n "${NICE:-0}" .venv/bin/cli-trading up --data-dir "$DATA" --port-base "$PORT_BASE" >"$DATA/up.out" 2>&1 &
UP=$!
trap 'kill -INT $UP; wait $UP; rm -rf "$DATA"' EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT_BASE/health" >/dev/null && break; sleep 1; done
REDIS=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['redisUrl'])" "$DATA/runtime.json")
nice -n "${NICE:-0}" $PY bench/pipeline_driver.py --url "http://127.0.0.1:$PORT_BASE" --redis "$REDIS" \
  --rate "$RATE" --seconds "$SECONDS_" &
DRIVER=$!
$PY bench/soak.py --data-dir "$DATA" --seconds "$SECONDS_" --every "${EVERY:-30}" 2>"${SOAK_SAMPLES:-/dev/stderr}"
wait $DRIVER
