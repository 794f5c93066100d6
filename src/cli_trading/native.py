"""The backtest's pure core compiled with mypyc: an optional speed-up, never a requirement.

`python -m cli_trading.build_native` compiles `MODULES` (pure modules that define no pydantic
model: mypyc cannot compile those) into `_native/` beside the package, with a manifest holding a
fingerprint of their sources and of the interpreter. `scripts/test.sh` runs it after installing.
`enable()` (called when `cli_trading` is imported) puts a finder first on `sys.meta_path` that
loads the compiled modules instead of the `.py` files **only while the fingerprint matches**:
an edited source, another Python, a missing or failed build (no C compiler) all mean the plain
Python modules, which make the same decisions (tests/unit/backtest/test_native.py compares the fills).

`CLI_TRADING_PURE=1` turns the compiled modules off; `CLI_TRADING_NATIVE_DIR` points at another
build directory. `python -m cli_trading.build_native --status` tells which is in use.
"""

from __future__ import annotations

import copyreg
import dataclasses
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
# the backtest's hot path, minus the modules that define pydantic models (the strategies)
MODULES = (
    "cli_trading.trading.indicators",
    "cli_trading.trading.fills",
    "cli_trading.trading.ledger",
    "cli_trading.trading.day",
    "cli_trading.trading.risk",
    "cli_trading.halt.state",
    "cli_trading.halt.policy",
    "cli_trading.backtest.engine",
    "cli_trading.backtest.metrics",
    "cli_trading.backtest.runner",
)
MANIFEST = "manifest.json"

_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(name="cli-trading-native", script_args=["build_ext", "--build-lib", sys.argv[1]],
      ext_modules=mypycify(sys.argv[2:], opt_level="3"))
"""


def native_dir() -> Path:
    return Path(os.environ.get("CLI_TRADING_NATIVE_DIR") or PACKAGE_DIR / "_native")


def source_of(module: str, package_dir: Path = PACKAGE_DIR) -> Path:
    return package_dir.joinpath(*module.split(".")[1:]).with_suffix(".py")


def fingerprint(package_dir: Path = PACKAGE_DIR) -> str:
    """The compiled modules' sources and the interpreter they were built for."""
    h = hashlib.sha256(f"{sys.implementation.cache_tag} {sysconfig.get_platform()} {sys.version}".encode())
    for module in MODULES:
        h.update(module.encode() + b"\0" + source_of(module, package_dir).read_bytes() + b"\0")
    return h.hexdigest()


def read_manifest(directory: Path, package_dir: Path = PACKAGE_DIR) -> dict[str, str] | None:
    """{module name: file} of a build that matches the sources, else None."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        current = manifest.get("fingerprint") == fingerprint(package_dir)
    except (OSError, ValueError):
        return None
    files = manifest.get("files")
    if not current or not isinstance(files, dict):
        return None
    return {name: str(directory / file) for name, file in files.items()}


def _rebuild(obj: Any) -> tuple[type, tuple[Any, ...]]:
    """Pickle (and copy) a compiled frozen dataclass through its constructor: mypyc's own
    pickling sets the fields one by one, which a frozen class refuses."""
    return type(obj), tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))


class NativeLoader(importlib.machinery.ExtensionFileLoader):
    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and dataclasses.is_dataclass(value)
                and value.__dataclass_params__.frozen  # type: ignore[attr-defined]  # set by @dataclass
                and all(f.init for f in dataclasses.fields(value))
            ):
                copyreg.pickle(value, _rebuild)


class NativeFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules of a build that matches the sources (checked once, at the
    first import of one of them)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, str] | None = None
        self._checked = False

    def files(self) -> dict[str, str]:
        if not self._checked:
            self._checked = True
            self._files = read_manifest(self.directory)
        return self._files or {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in MODULES and not fullname.endswith("__mypyc"):
            return None
        file = self.files().get(fullname)
        if file is None:
            return None
        loader = NativeLoader(fullname, file)
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def enable() -> None:
    """Load the compiled modules when a matching build exists (unless CLI_TRADING_PURE=1)."""
    if os.environ.get("CLI_TRADING_PURE") == "1":
        return
    if any(isinstance(f, NativeFinder) for f in sys.meta_path):
        return
    directory = native_dir()
    if (directory / MANIFEST).exists():
        sys.meta_path.insert(0, NativeFinder(directory))


def compiled() -> bool:
    """Is the backtest engine the compiled one in this process?"""
    module = sys.modules.get("cli_trading.backtest.engine")
    return module is not None and str(module.__file__).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def build(out: Path | None = None) -> Path:
    """Compile MODULES into `out` (default: `native_dir()`), replacing what was there.
    Raises CalledProcessError when mypyc or the C compiler fails."""
    out = out or native_dir()
    src_root = PACKAGE_DIR.parent
    with tempfile.TemporaryDirectory(prefix="cli-trading-native-") as tmp:
        work = Path(tmp)
        # a copy of the package: mypy takes an installed package's site-packages for a source
        # root (and trips over the other modules there); mypyc writes its C files under build/
        package = work / "src" / PACKAGE_DIR.name
        shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("_native*", "__pycache__", "*.so"))
        sources = [str(source_of(m, package)) for m in MODULES]
        project = src_root.parent / "pyproject.toml"  # a checkout: the project's mypy settings
        if not project.exists():
            project = work / "mypy.ini"
            project.write_text("[mypy]\nplugins = pydantic.mypy\n")
        config = ["--config-file", str(project)]
        stamp = fingerprint(package)  # the copied sources: edited meanwhile, the build is stale
        subprocess.run(  # noqa: S603 - argv of our own: this interpreter, our sources
            [sys.executable, "-c", _SETUP, str(work / "lib"), *config, *sources],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
        )
        staged = work / "staged"
        staged.mkdir()
        files: dict[str, str] = {}
        for so in (work / "lib").rglob("*.so"):
            rel = so.relative_to(work / "lib")
            name = ".".join((*rel.parent.parts, rel.name.split(".")[0]))
            files[name] = f"{name}{so.name[len(rel.name.split('.')[0]) :]}"
            shutil.copy2(so, staged / files[name])
        missing = set(MODULES) - set(files)
        if missing:
            raise RuntimeError(f"mypyc produced no module for {', '.join(sorted(missing))}")
        (staged / MANIFEST).write_text(json.dumps({"fingerprint": stamp, "files": files}, indent=1))
        out.parent.mkdir(parents=True, exist_ok=True)
        fresh, old = out.with_name(out.name + ".new"), out.with_name(out.name + ".old")
        for leftover in (fresh, old):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.copytree(staged, fresh)
        if out.exists():  # swapped by renames: a process starting meanwhile sees one build or none
            out.rename(old)
        fresh.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    return out
