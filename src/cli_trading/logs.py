"""Structured JSON logs (structlog over stdlib logging): one line per event on stderr and in
`<logs>/<agent>.log`, rotated by size. requestId/traceId come from context variables, so every
line written while handling a request or message carries them. Secret-looking fields are
redacted before rendering, whatever the caller passed."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import Processor

SECRET_WORDS = ("token", "password", "secret", "authorization", "api_key", "apikey", "cookie")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k in list(event):
        lk = k.lower()
        if any(w in lk for w in SECRET_WORDS) and not lk.endswith(("fingerprint", "_name", "header")):
            event[k] = "***"
    return event


def configure(
    agent: str, log_dir: Path | None, *, level: str = "INFO", stderr: bool = True, max_bytes: int = 20_000_000
) -> None:
    """Configure logging for this process: stderr (unless a supervisor already keeps the file)
    and `<log_dir>/<agent>.log`."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)] if stderr or log_dir is None else []
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(log_dir / f"{agent}.log", maxBytes=max_bytes, backupCount=5)
        )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        _redact,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,  # uvicorn's and other libraries' records become JSON too
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    for h in handlers:
        h.setFormatter(formatter)
        root.addHandler(h)
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "httpcore", "alembic", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(agent=agent)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def file_logger(path: Path, name: str, max_bytes: int = 20_000_000) -> logging.Logger:
    """A plain JSON-lines file (the admin access log), rotated by size, not propagated."""
    lg = logging.getLogger(name)
    for old in [h for h in lg.handlers if getattr(h, "baseFilename", None) != str(path.absolute())]:
        lg.removeHandler(old)  # another agent of this process (tests) logged elsewhere
        old.close()
    if not lg.handlers:
        path.parent.mkdir(parents=True, exist_ok=True)
        h = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=5)
        h.setFormatter(logging.Formatter("%(message)s"))
        lg.addHandler(h)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    return lg
