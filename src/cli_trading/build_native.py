"""`python -m cli_trading.build_native`: compile the backtest's pure core with mypyc (see
native.py); exits 1 with the reason when it cannot (no C compiler, no mypy), and plain Python
stays in use. `--status`: is a build matching the sources there?"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from cli_trading.native import build, native_dir, read_manifest


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        try:
            out = build()
        except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
            # mypy's findings go to stdout, the compiler's to stderr
            detail = f"{getattr(exc, 'stdout', '') or ''}{getattr(exc, 'stderr', '') or ''}" or str(exc)
            print(f"compiled core not built, plain Python is used: {detail.strip()[-2000:]}", file=sys.stderr)
            return 1
        print(f"compiled core built in {out}")
        return 0
    if args == ["--status"]:
        state = "current" if read_manifest(native_dir()) else "absent or stale"
        print(f"compiled core in {native_dir()}: {state}; CLI_TRADING_PURE={os.environ.get('CLI_TRADING_PURE', '')}")
        return 0
    print("usage: python -m cli_trading.build_native [--status]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
