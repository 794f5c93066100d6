"""The lock files (scripts/lock.sh): every dependency pyproject.toml declares is pinned there at
a version its bounds allow, and the image and CI install from them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.deploy import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LINUX_311 = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11", "extra": ""}


def pins(lock: Path) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock.read_text(), re.M)
    return {canonicalize_name(n): v for n, v in found}


def unmet(requirements: list[str], pinned: dict[str, str]) -> list[str]:
    wrong = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(LINUX_311):
            continue
        version = pinned.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            wrong.append(f"{line} (locked: {version})")
    return wrong


def test_runtime_lock_pins_every_dependency_within_its_bounds() -> None:
    assert unmet(PROJECT["dependencies"], pins(ROOT / "requirements.lock")) == []


def test_dev_lock_pins_dependencies_and_dev_extras_at_the_same_versions() -> None:
    dev = pins(ROOT / "requirements-dev.lock")
    assert unmet(PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"], dev) == []
    # the image builds its compiled core with the dev lock's tools (Dockerfile, stage `native`)
    assert unmet(PROJECT["optional-dependencies"]["fast"], dev) == []
    runtime = pins(ROOT / "requirements.lock")
    assert {n: dev.get(n) for n in runtime} == runtime


def test_locks_carry_hashes() -> None:
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / lock).read_text()
        assert text.count("==") <= text.count("--hash=sha256:"), lock


def test_image_and_ci_install_from_the_locks() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install --require-hashes -r requirements\.lock", dockerfile)
    assert dockerfile.index("requirements.lock") < dockerfile.index("COPY src")  # a cached layer
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert "-r requirements-dev.lock" in script and "--no-deps -e ." in script
