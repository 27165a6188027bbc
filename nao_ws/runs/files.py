"""Files written whole or not at all, strict JSON, and failed reads and writes as one-line user errors."""
from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import NaoWsError


def fsync_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file, fsynced, renamed; removed again on any failure."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_above(path: Path) -> Path | None:
    """The file among ``path``'s parents, if one is (then no folder or file can be made at ``path``)."""
    return next((p for p in path.parents if p.is_file()), None)


def io_error(exc: OSError, what: str, run: Path | None = None) -> NaoWsError:
    """A failed read or write as a one-line user error that says what to do about it."""
    reason = exc.strerror or exc.__class__.__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some disk space" + (f", then continue with --resume {run}" if run is not None else "")
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "choose an --output where you may write" if run is None else f"make {run} writable, then --resume it"
    elif exc.errno == errno.ENOTDIR:
        fix = "a part of the path is a file: choose another path"
    else:
        fix = "check the path and the disk"
    return NaoWsError(f"{what} failed ({reason}): {fix}")


def strict_json(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None, so every file the run writes is standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    fsync_write(Path(path), (json.dumps(strict_json(obj), indent=2) + "\n").encode())
