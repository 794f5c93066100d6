#!/usr/bin/env bash
# Runbook wrapper: `cli-trading secrets` does the work (see docs/operations-scripts.md).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if command -v cli-trading >/dev/null 2>&1; then
  exec cli-trading secrets "$@"
elif [ -x "$root/.venv/bin/cli-trading" ]; then
  exec "$root/.venv/bin/cli-trading" secrets "$@"
fi
echo "cli-trading not found: install it (pip install -e .) or create $root/.venv" >&2
exit 127
