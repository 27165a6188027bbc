"""Files written whole or not at all, strict JSON, and failed reads and writes as one-line user errors."""
from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import NaoWsError


def no_follow(path, flags: int) -> int:
    """``open(..., opener=no_follow)``: a link at ``path`` is refused (ELOOP), not followed."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)


def new_file(path, flags: int) -> int:
    """``open(..., opener=new_file)``: ``path`` is made now, never an existing file or link."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_EXCL, 0o644)


def fsync_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file, fsynced, renamed; removed again on any failure.
    Neither write follows a link: a leftover temporary file (or a link in its place) is removed and the new one
    made afresh, and the rename replaces a link at ``path`` rather than the file it points to."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        with open(tmp, "wb", opener=new_file) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_text(path: Path, text: str, sync: bool = True) -> None:
    """Append ``text`` to ``path`` with one write (and an fsync), never through a link: a log that is a link
    to a file elsewhere is refused, not appended to."""
    try:
        with open(path, "a", opener=no_follow) as fh:
            fh.write(text)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NaoWsError(f"{path} is a symbolic link: a run writes only inside its folder; replace the link "
                             "with the file itself, or start a new run") from None
        raise


def links_in(root: Path) -> list[Path]:
    """The symbolic links in the folder ``root`` and below (a run folder holds none of its own making)."""
    out = []
    for folder, dirs, files in os.walk(root):
        out += [Path(folder, n) for n in dirs + files if os.path.islink(os.path.join(folder, n))]
    return out


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
