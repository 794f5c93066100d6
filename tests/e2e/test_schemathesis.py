"""Property-based API tests with schemathesis against every agent's own OpenAPI document: no
generated request may produce a 5xx."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cli_trading.contracts import AGENT_PORTS
from tests.e2e.conftest import TOKEN, start_system

pytestmark = pytest.mark.e2e
SCHEMATHESIS = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "schemathesis"


def test_no_server_errors_from_generated_requests(tmp_path: Path) -> None:
    s = start_system(tmp_path, extra_env={"AUTH_FAIL_LIMIT": "1000000"})
    try:
        failures = []
        for agent in AGENT_PORTS:
            res = subprocess.run(
                [
                    str(SCHEMATHESIS),
                    "run",
                    f"{s.url(agent)}/openapi.json",
                    "--checks",
                    "not_a_server_error",
                    "--max-examples",
                    "5",
                    "--phases",
                    "coverage,fuzzing",
                    "-H",
                    f"X-Admin-Token: {TOKEN}",
                    "--request-timeout",
                    "10",
                    "--no-color",
                ],
                capture_output=True,
                text=True,
                timeout=240,
            )
            if res.returncode != 0:
                failures.append(f"{agent}:\n{res.stdout[-3000:]}")
        assert not failures, "\n\n".join(failures)
    finally:
        s.stop()
