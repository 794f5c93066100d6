#!/usr/bin/env bash
# Start cli-trading on the machine's PostgreSQL and Redis (a fresh database and Redis DB 15),
# run the pipeline benchmark (closed-loop throughput, sustained for a minute, open-loop latency
# at 100 runs/s) and the halt-latency benchmark under both loads, print their JSON lines, stop.
# First, the ceiling of the HTTP clients themselves. Record the figures in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY bench/client_ceiling.py
DATA=$(mktemp -d)
export REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/15}
export DATABASE_URL=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/ct_bench}
export ADMIN_TOKEN=bench-admin-token-0123456789abcdef
# the benchmark measures the pipeline, not the day's PnL: keep the automatic halts out of it
export DAILY_TARGET_PCT=1000 DAILY_LOSS_LIMIT_PCT=99
psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS ct_bench WITH (FORCE)" -c "CREATE DATABASE ct_bench"
redis-cli -u "$REDIS_URL" FLUSHDB >/dev/null
.venv/bin/cli-trading up --data-dir "$DATA" --speed "${SPEED:-1}" >"$DATA/up.out" 2>&1 &
UP=$!
trap 'kill -INT $UP; wait $UP' EXIT
for _ in $(seq 1 90); do curl -sf http://127.0.0.1:7005/health >/dev/null && curl -sf http://127.0.0.1:7001/health >/dev/null && break; sleep 1; done
# warm-up, not recorded: the first batches after a start prepare statements and fill caches
$PY bench/pipeline_driver.py --redis "$REDIS_URL" -n 1000 -c 32 >/dev/null
$PY bench/pipeline_driver.py --redis "$REDIS_URL" -n "${N:-2000}" -c 32
$PY bench/pipeline_driver.py --redis "$REDIS_URL" -c 32 --for-seconds 60
$PY bench/pipeline_driver.py --redis "$REDIS_URL" --rate 100 --seconds 10
# the acceptance check's client (httpx): what perf-pipeline.sh sees on this machine
$PY bench/pipeline_driver.py --redis "$REDIS_URL" -n "${N:-2000}" -c 32 --client httpx
# halts sent with curl (the runbook's command): 200 under the closed loop, 100 under 100 runs/s;
# then under the closed loop from aiohttp, as measured before 2026-11-27 afternoon
$PY bench/halt_latency.py --redis "$REDIS_URL" --token "$ADMIN_TOKEN" --halts 200
$PY bench/halt_latency.py --redis "$REDIS_URL" --token "$ADMIN_TOKEN" --halts 100 --rate 100
$PY bench/halt_latency.py --redis "$REDIS_URL" --token "$ADMIN_TOKEN" --client aiohttp
