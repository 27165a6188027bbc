"""What a run was started with, checked before ``--resume`` touches anything: the config (every field but
``device``, which a resume may change) against the one its checkpoint holds, and the files it reads (a
benchmark table's checksum) against those the run recorded. A mismatch is one line naming what changed."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import NaoWsError

RESUME_MAY_CHANGE = ("device",)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def config_edits(now: dict, started: dict) -> list[str]:
    """``field old → new`` for each field of config.json that differs from what the run was started with."""
    keys = [k for k in dict.fromkeys([*started, *now]) if k not in RESUME_MAY_CHANGE]
    return [f"{k} {_show(started.get(k))} → {_show(now.get(k))}" for k in keys if now.get(k) != started.get(k)]


def check_config_unchanged(run_path: Path, now: dict, ckpt: dict | None) -> None:
    """Refuse a resume whose config.json no longer says what the run was started with (its checkpoint's)."""
    started = ckpt.get("config") if isinstance(ckpt, dict) else None
    if not isinstance(started, dict):
        return
    edits = config_edits(now, started)
    if edits:
        more = f" (and {len(edits) - 1} more)" if len(edits) > 1 else ""
        raise NaoWsError(f"{run_path}/config.json was edited after the run started: {edits[0]}{more}; restore it to "
                         "continue this run, or start a new run with the edited config and a new --output")


def check_files_unchanged(run_path: Path, recorded: dict, now: dict, restore: dict | None = None) -> None:
    """Refuse a resume whose input files (``{name: sha256}``) differ from those the run recorded; ``restore``
    says how to get back a file that is not the user's own (``{name: how}``)."""
    for name, digest in recorded.items():
        if name in now and now[name] != digest:
            how = (restore or {}).get(name, "restore the file the run read")
            raise NaoWsError(f"{name} changed since the run in {run_path} started (its SHA-256 differs): {how} to "
                             "continue it, or start a new run")
