"""Known vulnerabilities in the locked dependencies: pip-audit over requirements-dev.lock (the
PyPI advisory data), failing on any finding not in scripts/audit-ignore.txt.

Some registry mirrors (this project's CI machine among them) serve a project's JSON but not the
per-release JSON pip-audit asks for. For a package pip-audit could not audit this way, the
project's JSON still carries the advisories of its newest release: a pin at the newest release
is audited from that; any other is listed as not audited, never passed silently.

Usage: .venv/bin/python scripts/audit.py   (exit 1 on a finding)
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements-dev.lock"
IGNORE = ROOT / "scripts" / "audit-ignore.txt"


def ignored() -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in IGNORE.read_text().splitlines())
    return {line for line in lines if line}


def pins() -> dict[str, str]:
    """name -> version, from the lock's `name==version` lines."""
    lines = (line.split(" ", 1)[0] for line in LOCK.read_text().splitlines() if "==" in line)
    return dict(line.split("==", 1) for line in lines if not line.startswith("#"))


def pip_audit(ignore: set[str]) -> list[dict[str, object]]:
    args = [sys.executable, "-m", "pip_audit", "--progress-spinner", "off", "--disable-pip", "-f", "json"]
    args += ["-r", str(LOCK)] + [a for i in sorted(ignore) for a in ("--ignore-vuln", i)]
    out = subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603 - our own argv
    if not out.stdout.strip():
        sys.exit(f"pip-audit failed: {out.stderr.strip()[-2000:]}")
    deps: list[dict[str, object]] = json.loads(out.stdout)["dependencies"]
    return deps


def newest_release_vulns(name: str, version: str, ignore: set[str]) -> tuple[str, list[str]] | None:
    """(name==version, advisory ids) from the project's JSON, or None when the pin is not its
    newest release (then the JSON says nothing about it) or the registry does not answer."""
    try:
        doc = httpx.get(f"https://pypi.org/pypi/{name}/json", timeout=30).raise_for_status().json()
    except httpx.HTTPError:
        return None
    if doc["info"]["version"] != version:
        return None
    ids = [v["id"] for v in doc.get("vulnerabilities") or [] if not v.get("withdrawn") and v["id"] not in ignore]
    return f"{name}=={version}", ids


def main() -> int:
    ignore = ignored()
    deps = pip_audit(ignore)
    found = {f"{d['name']}=={d['version']}": [str(v["id"]) for v in d["vulns"]] for d in deps if d.get("vulns")}  # type: ignore[attr-defined]  # JSON
    locked = pins()
    skipped = [(str(d["name"]), locked[str(d["name"])]) for d in deps if "skip_reason" in d]
    with ThreadPoolExecutor(8) as pool:
        fallback = list(pool.map(lambda nv: newest_release_vulns(*nv, ignore), skipped))
    found |= {pin: ids for pin, ids in filter(None, fallback) if ids}
    unaudited = [f"{n}=={v}" for (n, v), r in zip(skipped, fallback, strict=True) if r is None]
    audited = len(deps) - len(unaudited)
    for pin, ids in sorted(found.items()):
        print(f"VULNERABLE {pin}: {', '.join(ids)}")
    if unaudited:
        print(f"not audited (no advisory data for these releases here): {' '.join(unaudited)}")
    print(f"audit: {audited}/{len(deps)} locked packages audited, {len(found)} with known vulnerabilities")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
