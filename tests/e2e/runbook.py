"""The runbook's own commands, taken from docs/runbook.md (a copy of the user's runbook) so the
tests run exactly what an operator types, pointed at the test system's port."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def commands(containing: str) -> list[str]:
    """Every shell command of the runbook that mentions `containing`, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", RUNBOOK.read_text(), flags=re.S)
    out = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        out += [line.strip() for line in joined.splitlines() if containing in line and not line.strip().startswith("#")]
    return out


def run(cmd: str, *, port: int, token: str) -> str:
    cmd = cmd.replace("localhost:7001", f"127.0.0.1:{port}")
    res = subprocess.run(
        ["bash", "-c", cmd],
        capture_output=True,
        text=True,
        timeout=30,
        env={"ADMIN_TOKEN": token, "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert res.returncode == 0, f"{cmd!r} failed: {res.stderr}"
    return res.stdout
