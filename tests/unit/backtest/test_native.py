"""The compiled pure core (cli_trading/native.py, mypyc) makes the same decisions as plain Python:
the golden backtests, run once on each build in processes of their own, give the same text (and
their results pickle); a build is used only while it matches the sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_trading import native

ROOT = Path(__file__).resolve().parents[3]
# every golden case's full text, digested, and whether the engine was the compiled one
PROBE = """
import hashlib, json, pickle
from cli_trading import native
from tests.unit.backtest.test_golden import CASES, text
digests = {name: hashlib.sha256(text(case()).encode()).hexdigest() for name, case in CASES.items()}
# the optimizer's workers send results back pickled (frozen dataclasses: metrics, halt events)
res = CASES["btc_shipped"]()
back = pickle.loads(pickle.dumps(res))
pickled = text(back) == text(res) and back.metrics == res.metrics and len(back.halts) > 0
print(json.dumps({"compiled": native.compiled(), "digests": digests, "pickled": pickled}))
"""


def probe(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build scripts/test.sh made, or a fresh one when it is absent or stale (this machine
    has a C compiler: the compiled build is always tested here)."""
    if native.read_manifest(native.native_dir()) is not None:
        return native.native_dir()
    return native.build(tmp_path_factory.mktemp("native"))


def test_the_compiled_core_gives_the_same_backtests_as_plain_python(native_dir: Path) -> None:
    pure = probe({"CLI_TRADING_PURE": "1", "CLI_TRADING_NATIVE_DIR": str(native_dir)})
    compiled = probe({"CLI_TRADING_PURE": "", "CLI_TRADING_NATIVE_DIR": str(native_dir)})
    assert pure["compiled"] is False
    assert compiled["compiled"] is True
    assert compiled["digests"] == pure["digests"]
    assert compiled["pickled"] is True and pure["pickled"] is True


def test_a_build_is_used_only_while_it_matches_the_sources(native_dir: Path, tmp_path: Path) -> None:
    package = tmp_path / "cli_trading"
    for module in native.MODULES:
        dest = native.source_of(module, package)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(native.source_of(module), dest)
    manifest = json.loads((native_dir / native.MANIFEST).read_text())
    assert native.read_manifest(native_dir, package) is not None  # the same sources
    assert set(native.MODULES) <= set(manifest["files"])
    edited = native.source_of("cli_trading.trading.ledger", package)
    edited.write_text(edited.read_text() + "\n# edited\n")
    assert native.read_manifest(native_dir, package) is None  # stale: plain Python
    assert native.read_manifest(tmp_path / "missing", package) is None
