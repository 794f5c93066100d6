"""`cli-trading backup backup | list`: timestamped backups of the database, Redis and the
configuration, with a manifest, SHA-256 checksums and retention. Restore and verify live in
`ops/restore.py`.

A backup is a folder `<BACKUP_DIR or <data>/backups>/<YYYYmmddTHHMMSSZ>/` (mode 0700, files 0600):

    database.dump | database.sqlite   pg_dump -Fc / SQLite online backup
    redis.jsonl                       every key of ours, DUMPed in one MULTI/EXEC
    config.json  config/*.yaml        settings in force, secrets removed; CONFIG_DIR files
    manifest.json                     what is in it, the ledger summary at backup time
    SHA256SUMS                        `sha256sum -c` format, covers every file above
    verification.json                 written by `verify` / `restore` (not checksummed)

Secrets are never written: not the admin token, not passwords (URLs are redacted). Back up the
secrets folder with your own encrypted tooling.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli_trading.config import redact_url
from cli_trading.contracts import iso
from cli_trading.isotime import parse_iso
from cli_trading.ops import dbtools, redisdump
from cli_trading.ops.locate import Located

SUMS = "SHA256SUMS"
MANIFEST = "manifest.json"
VERIFICATION = "verification.json"
SECRET_FIELDS = ("admin_token", "exchange_api_key", "exchange_api_secret")
FORMAT = 1


class BackupError(RuntimeError):
    pass


@dataclass
class BackupInfo:
    id: str
    path: Path
    manifest: dict[str, Any]
    verification: dict[str, Any] | None

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    @property
    def created(self) -> datetime:
        return parse_iso(self.manifest["createdAt"])

    def age_s(self) -> float:
        return (datetime.now(UTC) - self.created).total_seconds()


# -- create ---------------------------------------------------------------------------------
def create(loc: Located, *, keep: int | None = None, skip_redis: bool = False) -> BackupInfo:
    root = loc.backup_root
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    bid = _new_id(root)
    tmp = root / f".tmp-{bid}"
    tmp.mkdir(mode=0o700)
    try:
        manifest = _fill(loc, tmp, bid, with_redis=not skip_redis)
        _write_json(tmp / MANIFEST, manifest)
        write_sums(tmp)
        for f in tmp.rglob("*"):
            f.chmod(0o700 if f.is_dir() else 0o600)
        tmp.rename(root / bid)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune(root, keep if keep is not None else int(os.environ.get("BACKUP_KEEP", "14")))
    return load(root / bid)


def _new_id(root: Path) -> str:
    base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    bid, n = base, 1
    while (root / bid).exists():
        n += 1
        bid = f"{base}-{n}"
    return bid


def _fill(loc: Located, folder: Path, bid: str, *, with_redis: bool) -> dict[str, Any]:
    started = time.monotonic()
    db_file, summary = _backup_db(loc, folder)
    redis_part = None
    if loc.redis_url and with_redis:
        try:
            part = redisdump.dump(redisdump.client(loc.redis_url), folder / "redis.jsonl")
        except redisdump.redis.RedisError as exc:
            raise BackupError(
                f"Redis at {redact_url(loc.redis_url)} not readable ({exc}); --skip-redis backs up the database alone"
            ) from exc
        redis_part = {"file": "redis.jsonl", **part}
    config_files = _backup_config(loc, folder)
    return {
        "format": FORMAT,
        "id": bid,
        "createdAt": iso(),
        "durationS": round(time.monotonic() - started, 2),
        "database": {
            "kind": "postgresql" if loc.is_postgres else "sqlite",
            "file": db_file,
            "url": redact_url(loc.db_url),
        },
        "redis": redis_part,
        "config": config_files,
        "ledger": summary,
        "files": {str(p.relative_to(folder)): _file_entry(p) for p in sorted(folder.rglob("*")) if p.is_file()},
        "secrets": "not included (back up the secrets folder with your own encrypted tooling)",
    }


def _backup_db(loc: Located, folder: Path) -> tuple[str, dict[str, Any]]:
    cash = loc.settings.starting_cash
    if loc.is_postgres:
        return "database.dump", asyncio.run(dbtools.pg_dump(loc.db_url, folder / "database.dump", cash))
    src = loc.sqlite_path
    if src is None:
        raise BackupError("no database to back up: neither DATABASE_URL nor a SQLite file in the data folder")
    dest = folder / "database.sqlite"
    dbtools.sqlite_copy(src, dest)
    return "database.sqlite", asyncio.run(dbtools.summary_of(dbtools.sqlite_url(dest), cash))


def _backup_config(loc: Located, folder: Path) -> list[str]:
    doc = json.loads(loc.settings.model_dump_json())
    for k in SECRET_FIELDS:
        doc.pop(k, None)
    for k in ("redis_url", "database_url"):
        if doc.get(k):
            doc[k] = redact_url(doc[k])
    doc["redis_url"] = redact_url(loc.redis_url) if loc.redis_url else None
    doc["database_url"] = redact_url(loc.db_url)
    _write_json(folder / "config.json", doc)
    files = ["config.json"]
    cfg = loc.settings.config_dir
    if cfg and cfg.is_dir():
        (folder / "config").mkdir(mode=0o700)
        for f in sorted(cfg.glob("*.y*ml")):
            shutil.copy2(f, folder / "config" / f.name)
            files.append(f"config/{f.name}")
    return files


# -- checksums ------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_entry(p: Path) -> dict[str, Any]:
    return {"sha256": sha256(p), "bytes": p.stat().st_size}


def write_sums(folder: Path) -> None:
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != SUMS)
    (folder / SUMS).write_text("".join(f"{sha256(folder / n)}  {n}\n" for n in names))


def check_sums(folder: Path) -> list[str]:
    """Problems with a backup's files (empty when every checksum matches)."""
    sums = folder / SUMS
    if not sums.exists():
        return [f"{SUMS} is missing"]
    listed: dict[str, str] = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    problems = []
    for name, digest in listed.items():
        f = folder / name
        if not f.exists():
            problems.append(f"{name} is missing")
        elif sha256(f) != digest:
            problems.append(f"{name} does not match its checksum (the file was changed or corrupted)")
    if MANIFEST not in listed:
        problems.append(f"{MANIFEST} is not covered by {SUMS}")
    elif not problems:
        manifest = json.loads((folder / MANIFEST).read_text())
        problems += [
            f"{n} is listed in the manifest but not in {SUMS}" for n in manifest.get("files", {}) if n not in listed
        ]
    return problems


# -- list, load, retention ------------------------------------------------------------------
def load(folder: Path) -> BackupInfo:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder} is not a readable backup ({MANIFEST}: {exc})") from exc
    ver = None
    if (folder / VERIFICATION).exists():
        try:
            ver = json.loads((folder / VERIFICATION).read_text())
        except ValueError:
            ver = {"ok": False, "problems": [f"{VERIFICATION} unreadable"]}
    return BackupInfo(folder.name, folder, manifest, ver)


def all_backups(root: Path) -> list[BackupInfo]:
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST).exists():
            try:
                out.append(load(d))
            except BackupError:
                continue
    return out


def resolve(root: Path, ref: str | None) -> Path:
    if ref in (None, "", "latest"):
        found = all_backups(root)
        if not found:
            raise BackupError(f"no backups in {root}: make one with `backup-system.sh backup`")
        return found[-1].path
    path = root / str(ref)
    if not path.is_dir():
        ids = ", ".join(b.id for b in all_backups(root)[-5:]) or "none"
        raise BackupError(f"no backup {ref!r} in {root} (latest: {ids})")
    return path


def prune(root: Path, keep: int) -> list[str]:
    """Keep the newest `keep` backups (0 keeps everything)."""
    found = all_backups(root)
    if keep <= 0 or len(found) <= keep:
        return []
    gone = found[: len(found) - keep]
    for b in gone:
        shutil.rmtree(b.path, ignore_errors=True)
    return [b.id for b in gone]


def record_verification(folder: Path, *, ok: bool, method: str, problems: list[str]) -> dict[str, Any]:
    doc = {"verifiedAt": iso(), "ok": ok, "method": method, "problems": problems}
    _write_json(folder / VERIFICATION, doc)
    (folder / VERIFICATION).chmod(0o600)
    return doc


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
