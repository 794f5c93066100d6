#!/usr/bin/env bash
# Install the project with its test dependencies into .venv, at the versions of the lock file,
# then lint, type-check, audit the dependencies and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
# The lock has hashes: pip installs exactly these files and nothing else (scripts/lock.sh makes it).
.venv/bin/pip install -q -r requirements-dev.lock
.venv/bin/pip install -q --no-deps -e .
# The backtest's pure core compiled with mypyc (src/cli_trading/native.py): optional, plain Python
# when it cannot be built; the tests then run on the compiled modules (test_native compares both).
.venv/bin/python -m cli_trading.build_native || true
.venv/bin/ruff check src tests bench
.venv/bin/python -m mypy
# Known vulnerabilities in the pinned dependencies fail the run; an unavoidable one is ignored in
# scripts/audit-ignore.txt with its reason (none today).
.venv/bin/python scripts/audit.py
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
