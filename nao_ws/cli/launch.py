"""Several training processes through torchrun: ``nao-ws train --nproc N`` runs torchrun's launcher in this process
(one node, a rendezvous on localhost), and a failing process of a job becomes one line.

The launcher: rank 0 writes to this terminal; the other processes' output goes to log files. When a process
ends with an error, torchrun stops the others (its own failure handling), and the launcher prints the one line
of the process whose failure caused the job's end: a user error before a crash, a crash before a process that
only lost its peers, the earliest first. The worker side (:func:`worker_failed`, called by the command line's
error handler) records each process's line where torchrun collects them, its error file; started by torchrun
directly, each failing process prints its line itself and torchrun adds its summary.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from ..errors import NaoWsError

LAUNCHED = "NAO_WS_LAUNCHED"  # set for the processes `--nproc` starts: they leave reporting to the launcher
PEER_LOST = re.compile(r"connection (closed|reset) by peer|broken pipe|NCCL communicator was aborted", re.I)
TIMED_OUT = re.compile(r"timed? ?out", re.I)


def in_worker() -> bool:
    """Whether this is one of several processes of a job torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def worker_argv(argv: list[str]) -> list[str]:
    """The command line of the processes ``argv`` starts: less its ``--nproc N`` (``--nproc=N``), and less its
    ``--download``, which the launcher has done."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc=") and a != "--download":
            out.append(a)
    return out


# -- the launcher ---------------------------------------------------------------------------------------------

def launch(nproc: int, argv: list[str]) -> None:
    """Run ``nao-ws <argv>`` as ``nproc`` processes on this machine through torchrun's launcher; returns when all
    have succeeded, else raises the one-line error of the process that failed first."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    import nao_ws

    logs = Path(tempfile.mkdtemp(prefix="nao-ws-processes-"))
    package_root = str(Path(nao_ws.__file__).resolve().parents[1])  # the processes run this very nao-ws
    env = {LAUNCHED: "1", "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    quiet = logging.getLogger("torch.distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # torchrun's own log lines; the failure is reported below, in one line
    redirects = ",".join(f"{r}:3" for r in range(1, nproc))
    args = ["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", "0", "--monitor-interval", "0.2",
            "--log-dir", str(logs), *(["--redirects", redirects] if redirects else []), "--module", "nao_ws", *argv]
    try:
        run(parse_args(args))
    except ChildFailedError as e:
        line, keep = _root_cause(e, logs)
        if not keep:
            shutil.rmtree(logs, ignore_errors=True)
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K")  # rank 0's progress bar, left where its process ended
        raise NaoWsError(line) from None
    finally:
        quiet.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    shutil.rmtree(logs, ignore_errors=True)


def _root_cause(error, logs: Path) -> tuple[str, bool]:
    """The line that says why the job ended, and whether it names a file under ``logs`` (then kept)."""
    ours = []
    for rank, failure in error.failures.items():
        data = failure.error_file_data if isinstance(failure.error_file_data, dict) else {}
        if "nao_ws" in data:
            info = data["nao_ws"]
            ours.append((not info["user"], info["peer"], info["time"], rank, failure.message, info))
    if ours:
        *_, rank, message, info = min(ours)
        if info.get("traceback"):
            where = logs / f"rank{rank}-traceback.txt"
            where.write_text(info["traceback"])
            return f"{message} (traceback: {where})", True
        return message, False
    rank, failure = error.get_first_failure()
    log = next(iter(sorted(logs.glob(f"**/{failure.local_rank}/stderr.log"))), None)
    output = f"; its output: {log}" if log is not None else ""
    if failure.exitcode < 0:
        hint = " (an NCCL collective that waits past --dist-timeout aborts its process)" \
            if failure.signal_name() == "SIGABRT" else ""
        return f"rank {rank} was stopped by {failure.signal_name()}{hint}{output}", log is not None
    return f"rank {rank} exited with status {failure.exitcode}{output}", log is not None


# -- the worker side ------------------------------------------------------------------------------------------

def describe(exc: BaseException) -> tuple[str, bool]:
    """(one line, whether the process only lost its peers) for an exception that ended a process of a job."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, RuntimeError) and PEER_LOST.search(text):
        return f"another process of the job stopped, so this one cannot go on ({text})", True
    if isinstance(exc, RuntimeError) and TIMED_OUT.search(text):
        return (f"no answer from the other processes within --dist-timeout: one of them is stuck or its node is "
                f"unreachable ({text})"), False
    return f"{type(exc).__name__}: {text}", False


def worker_failed(exc: BaseException, line: str | None = None, user: bool = False) -> None:
    """End this process of a job: record its one line (``line``, or :func:`describe`'s) in the error file torchrun
    reads, print it unless ``nao-ws train --nproc`` reports for all, and exit without running the interpreter's
    shutdown (a process group whose peers are gone can abort it). Status 2 for a user error, else 1."""
    rank = os.environ.get("RANK", "0")
    peer = False
    if line is None:
        line, peer = describe(exc)
    line = f"rank {rank}: {line}"
    crash = "" if user or peer else "".join(traceback.format_exception(exc))
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        record = {"message": line, "timestamp": int(time.time()),
                  "nao_ws": {"user": user, "peer": peer, "time": time.time(), "traceback": crash}}
        try:
            Path(path).write_text(json.dumps(record))
        except OSError:
            pass  # the line is still printed below or by torchrun's summary of exit statuses
    if os.environ.get(LAUNCHED) is None:
        if crash:
            sys.stderr.write(crash)
        if not peer:
            sys.stderr.write(f"error: {line}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2 if user else 1)
