"""Run folders: a self-describing folder per run, its append-only logs and its atomic, checksummed checkpoints.

``config.json`` holds the resolved config, so ``--resume RUN_DIR`` needs nothing else. Checkpoints are plain
dicts of tensors and Python scalars (loadable with ``torch.load(weights_only=True)``), written to a temporary
file, fsynced, then renamed, with a SHA-256 sidecar; the previous checkpoint is deleted only after the new one
is complete, and a corrupt or truncated latest checkpoint falls back to the previous one with a warning. A
large checkpoint can be written off the training thread (``save_checkpoint(background=True)``).

A folder has one owner at a time: ``create`` and ``open`` take an OS lock on ``owner.lock`` (``fcntl.flock``),
which the process holds until it ends, so a second run in the same folder is refused, and the lock of a killed
process is gone with it. Nothing a run writes goes through a symbolic link: ``--resume`` refuses a folder
that holds one, and every write opens its file without following one.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from supernet.spaces import JsonError, loads_strict

from ..errors import NaoWsError
from .checkpoints import checkpoint_problem, host_copy
from .files import append_text, file_above, fsync_write, io_error, links_in, strict_json, write_json_atomic

CHECKPOINT_GLOB = "ckpt-*.pt"
LOCK = "owner.lock"


def _step(checkpoint: Path) -> int:
    """The step of ``ckpt-<step>.pt`` (``save_checkpoint``)."""
    return int(checkpoint.stem.split("-", 1)[1])


class RunDir:
    """The folder of one run: config, logs, metrics, checkpoints, TensorBoard events, results."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self._records: dict[str, list] = {}  # append-only log -> the records this process knows it holds
        self._fresh = False  # made by ``create`` in this process: ``discard`` may remove it
        self._made: Path | None = None  # the outermost folder ``create`` made (None: ``path`` was an empty one)
        self._writer: threading.Thread | None = None  # a checkpoint being written in the background
        self._writer_error: BaseException | None = None  # what it raised, for ``wait`` to raise again
        self._lock: int | None = None  # the descriptor of ``owner.lock`` while this process owns the folder

    @classmethod
    def create(cls, output: str | None, command: str, task: str) -> "RunDir":
        """A new run folder; ``output`` defaults to ``runs/<command>-<task>-<timestamp>``."""
        if output is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            output = os.path.join("runs", f"{command}-{task}-{stamp}")
        path = Path(output)
        run = cls(path)
        try:
            if path.exists() and not path.is_dir():
                raise NaoWsError(f"--output {path} is a file, not a folder: choose another --output")
            if path.is_dir() and any(path.iterdir()):
                raise NaoWsError(f"output folder {path} exists and is not empty: choose another --output, "
                                 f"or continue it with --resume {path}")
            run._fresh = True
            run._made = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
            path.mkdir(parents=True, exist_ok=True)
            run.own()
            run.checkpoints.mkdir(exist_ok=True)
        except OSError as e:
            file = file_above(path)
            if file is not None:
                raise NaoWsError(f"--output {path} lies under {file}, which is a file: choose another --output") from None
            raise io_error(e, f"creating the run folder {path}") from None
        return run

    def discard(self, first_step: int = 0) -> None:
        """Remove what ``create`` made, unless a checkpoint of step ``first_step`` or later was written: a start
        that failed leaves nothing behind, so the corrected command can use the same --output. A training
        passes 1: its step-0 checkpoint is only the initial state its config and seed make again."""
        self._join_writer()
        if not self._fresh or any(_step(p) >= first_step for p in self._checkpoint_files()):
            self.release()
            return
        self.release()
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)
            return
        for child in self.path.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """An existing run folder, for ``--resume``."""
        run = cls(path)
        if not (run.path / "config.json").is_file():
            raise NaoWsError(f"{run.path} is not a run folder (no config.json): pass the folder a run wrote")
        links = links_in(run.path)
        if links:
            raise NaoWsError(f"{links[0]} is a symbolic link: a run writes only inside its folder; replace the "
                             "link with the file or folder itself, or start a new run")
        try:
            run.own()
            run.checkpoints.mkdir(exist_ok=True)
        except OSError as e:
            raise io_error(e, f"opening {run.checkpoints}", run.path) from None
        return run

    def own(self) -> None:
        """Take the folder's lock, or refuse in one line naming the process that holds it. The lock is the
        kernel's, tied to this process's open file: it goes when the process ends, however it ends."""
        if self._lock is not None:
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return  # a file system without locks (some network ones): the run goes on unguarded
            raise NaoWsError(f"{self.path} is in use by process {pid}: wait for it to end (or stop it), "
                             "or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock = fd

    def release(self) -> None:
        """Give up the folder's lock (the process ending does too)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __del__(self):
        self.release()

    # -- config and results ------------------------------------------------------------------------------
    def write_config(self, cfg: dict) -> None:
        self.write_json("config.json", cfg)

    def read_config(self) -> dict:
        p = self.path / "config.json"
        try:
            cfg = loads_strict(p.read_bytes())
        except JsonError as e:  # a key twice, NaN: nao-ws writes neither, so someone edited the file
            raise NaoWsError(f"{p} is damaged: {e}") from None
        except (OSError, ValueError) as e:  # ValueError: not UTF-8, or not JSON
            raise NaoWsError(f"{p} is unreadable ({e.__class__.__name__}): the run folder is damaged") from None
        if not isinstance(cfg, dict):
            raise NaoWsError(f"{p} holds no mapping of options: the run folder is damaged")
        return cfg

    def write_json(self, name: str, obj: Any) -> None:
        try:
            write_json_atomic(self.path / name, obj)
        except OSError as e:
            raise io_error(e, f"writing {self.path / name}", self.path) from None

    def append_jsonl(self, name: str, *records: dict) -> None:
        """Append lines with one write and one fsync (a scored pool: 1,000 records): finished results
        survive the process dying right after. A background checkpoint's failure is raised here once known."""
        if self._writer is not None and not self._writer.is_alive():
            self.wait()
        if name not in self._records:  # a log of an earlier process: what the file holds
            self._records[name] = self.read_jsonl(name)
        lines = [json.dumps(strict_json(r)) for r in records]
        try:
            append_text(self.path / name, "".join(line + "\n" for line in lines))
        except OSError as e:
            raise io_error(e, f"appending to {self.path / name}", self.path) from None
        self._records[name] += [json.loads(line) for line in lines]  # plain JSON values: what the file holds

    def read_jsonl(self, name: str) -> list[dict]:
        """Every complete line; a torn line (the process died mid-write) is dropped."""
        p = self.path / name
        if not p.exists():
            return []
        out = []
        for line in p.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def restore_logs(self, state: dict) -> None:
        """Make each append-only log a checkpoint holds (``save_checkpoint(logs=...)``) exactly its records:
        lines written after the checkpoint go, and lines lost to a cut or damaged file come back."""
        for name, records in state.get("logs", {}).items():
            text = "".join(json.dumps(r) + "\n" for r in records)
            p = self.path / name
            if not p.exists() or p.read_bytes() != text.encode():
                try:
                    fsync_write(p, text.encode())
                except OSError as e:
                    raise io_error(e, f"restoring {p}", self.path) from None
            self._records[name] = list(records)

    def truncate_jsonl(self, name: str, n: int) -> None:
        """Keep the first ``n`` records of ``name``: a resumed run drops what was written after its checkpoint."""
        records = self.read_jsonl(name)[:n]
        fsync_write(self.path / name, "".join(json.dumps(r) + "\n" for r in records).encode())

    def log(self, message: str) -> None:
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        try:
            append_text(self.path / "log.txt", f"{stamp} {message}\n", sync=False)
        except OSError as e:
            raise io_error(e, f"appending to {self.path / 'log.txt'}", self.path) from None

    # -- checkpoints ---------------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict, step: int, keep: int = 2, logs: tuple[str, ...] = (),
                        background: bool = False) -> Path:
        """Write ``state`` as ``checkpoints/ckpt-<step>.pt`` atomically, with a SHA-256 sidecar.

        ``logs`` names append-only logs whose records so far the checkpoint holds too (``restore_logs``).
        ``background``: take a host copy of ``state`` now (``host_copy``: the caller may go on changing its
        tensors and containers), then serialise, hash, write and fsync it on a writer thread while training
        goes on. One write at a time: the next checkpoint, ``wait`` and every read of the checkpoints wait
        for it first, and raise its error on the calling thread. Until it is complete the previous checkpoint
        is the latest, as when a process dies mid-write, so resuming is guaranteed the same.
        """
        self.wait()
        if logs:
            state = {**state, "logs": {name: list(self._records.get(name, [])) for name in logs}}
        path = self.checkpoints / f"ckpt-{step:010d}.pt"
        if not background:
            self._write_checkpoint(state, path, keep)
            return path
        self._writer = threading.Thread(target=self._write_in_background, args=(host_copy(state), path, keep),
                                        name="checkpoint-writer")
        self._writer.start()
        return path

    def _write_checkpoint(self, state: dict, path: Path, keep: int) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        try:
            fsync_write(path, data)
            fsync_write(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())
        except OSError as e:  # e.g. the disk is full: no half checkpoint, the previous ones stay
            path.unlink(missing_ok=True)
            resumable = self.path if self._checkpoint_files() else None  # else the command starts over
            raise io_error(e, f"writing checkpoint {path}", resumable) from None
        for old in self._checkpoint_files()[keep:]:
            old.unlink(missing_ok=True)
            old.with_suffix(".sha256").unlink(missing_ok=True)

    def _write_in_background(self, state: dict, path: Path, keep: int) -> None:
        try:
            self._write_checkpoint(state, path, keep)
        except BaseException as e:  # noqa: BLE001 - raised again on the training thread by ``wait``
            self._writer_error = e

    def _join_writer(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    def wait(self) -> None:
        """Until a background checkpoint write is complete; what it raised, if anything, is raised here."""
        self._join_writer()
        error, self._writer_error = self._writer_error, None
        if error is not None:
            raise error

    def list_checkpoints(self) -> list[Path]:
        """Newest first, once a background write is complete."""
        self.wait()
        return self._checkpoint_files()

    def _checkpoint_files(self) -> list[Path]:
        return sorted(self.checkpoints.glob(CHECKPOINT_GLOB), reverse=True)

    def load_latest_checkpoint(self, map_location="cpu", record: bool = True) -> dict | None:
        """The newest checkpoint that passes its checksum and loads; None if the run has none yet.
        ``record=False`` leaves the folder untouched: a fallback is only warned about, not also logged."""
        paths = self.list_checkpoints()
        for path in paths:
            problem = checkpoint_problem(path)
            if problem is None:
                try:
                    return torch.load(path, map_location=map_location, weights_only=True)
                except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
                    problem = f"cannot be loaded ({e.__class__.__name__})"
            msg = f"checkpoint {path} {problem}; falling back to an earlier one"
            warnings.warn(msg, stacklevel=2)
            if record:
                self.log("WARNING " + msg)
        if paths:
            raise NaoWsError(f"no usable checkpoint in {self.checkpoints}: every one is corrupt; start a new run")
        return None

    def resume_checkpoint(self) -> dict:
        """The checkpoint ``--resume`` continues from. Without one there is nothing to continue, and starting
        again in this folder would append a second history to its logs: that is a one-line error."""
        self.check_resumable()
        return self.load_latest_checkpoint()

    def check_resumable(self) -> None:
        if not self.list_checkpoints():
            raise NaoWsError(f"{self.path} holds no checkpoint to continue from: start over with the original "
                             f"command and a new --output (or delete {self.path} first)")


def load_checkpoint_file(path: str | Path, map_location="cpu") -> dict:
    """A single checkpoint given by the user (``nao-ws eval --checkpoint``), with one-line errors."""
    p = Path(path)
    if p.is_dir():
        run = RunDir(p)
        state = run.load_latest_checkpoint(map_location)
        if state is None:
            raise NaoWsError(f"{p} holds no checkpoint")
        return state
    if not p.is_file():
        raise NaoWsError(f"checkpoint {p} does not exist")
    if p.with_suffix(".sha256").exists() and checkpoint_problem(p):
        raise NaoWsError(f"checkpoint {p} {checkpoint_problem(p)}")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise NaoWsError(f"checkpoint {p} cannot be loaded ({e.__class__.__name__}): not a nao-ws checkpoint") from None
    if not isinstance(state, dict) or "kind" not in state:
        raise NaoWsError(f"checkpoint {p} is not a nao-ws checkpoint (no 'kind' entry)")
    return state
