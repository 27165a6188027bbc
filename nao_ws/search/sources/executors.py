"""Where the candidates of standalone training run: here, in worker processes, or on Ray.

An executor calls ``fn(job, data, device) -> dict`` once per job and yields ``(job, Outcome)`` as each job
finishes, in completion order, so the caller can record every result the moment it exists. ``fn`` must be
a pure function of ``job`` and ``data`` (the job carries the architecture, the recipe and the seed), so a
retry gives the same result as a first attempt would have. A job whose attempts all raise or kill their
worker is yielded as failed after ``max_retries`` retries.

* ``local``, one worker: the jobs run one after another in this process.
* ``local``, ``workers`` > 1: one spawned worker process per device (GPU, or a share of the CPU cores).
* ``ray``: one Ray task per job, one GPU each when the cluster has GPUs and one CPU otherwise; Ray's own
  ``max_retries`` covers killed workers and exceptions alike, ``ray.wait`` hands back results as they come.
"""
from __future__ import annotations

import multiprocessing
import os
import socket
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch

from ...errors import NaoWsError
from ...runs import resolve_device
from .options import EXECUTORS

CONNECT_TIMEOUT_S = 5.0  # ours: an unreachable --ray-address fails fast instead of ray.init's minutes of retries

CandidateFn = Callable[[Any, Any, torch.device], dict]


@dataclass(frozen=True)
class Outcome:
    """A finished job: its result, or the last error of its attempts (one line)."""

    result: dict | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# -- local, in this process ------------------------------------------------------------------------------

class SerialExecutor:
    """Jobs one after another in this process, on one device."""

    def __init__(self, data, device: torch.device, max_retries: int):
        self.data, self.device, self.max_retries = data, device, max_retries

    def map(self, fn: CandidateFn, jobs: Iterable) -> Iterator[tuple[Any, Outcome]]:
        for job in jobs:
            yield job, self._attempts(fn, job)

    def _attempts(self, fn: CandidateFn, job) -> Outcome:
        error = None
        for _ in range(self.max_retries + 1):
            try:
                return Outcome(result=fn(job, self.data, self.device))
            except Exception as e:  # noqa: BLE001 - a candidate failing for any reason is retried, then recorded
                error = _one_line(e)
        return Outcome(error=error)

    def close(self) -> None:
        pass


# -- local, one worker process per device -----------------------------------------------------------------

_WORKER: dict = {}  # in a worker process: its data and device, set once by _init_worker


def _init_worker(data, devices, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(data=data, device=torch.device(devices.get()))


def _call_in_worker(fn: CandidateFn, job) -> dict:
    return fn(job, _WORKER["data"], _WORKER["device"])


class ProcessExecutor:
    """One spawned worker process per device; at most one job in flight per worker.

    Keeping only as many jobs in flight as there are workers means a worker that dies (which breaks the
    whole ``ProcessPoolExecutor``) costs an attempt only to the jobs that were running; a fresh pool then
    takes over.
    """

    def __init__(self, data, devices: list[str], threads: int, max_retries: int):
        self.data, self.devices, self.threads, self.max_retries = data, devices, threads, max_retries
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
        queue = ctx.Queue()
        for d in self.devices:
            queue.put(d)
        return ProcessPoolExecutor(len(self.devices), mp_context=ctx, initializer=_init_worker,
                                   initargs=(self.data, queue, self.threads))

    def map(self, fn: CandidateFn, jobs: Iterable) -> Iterator[tuple[Any, Outcome]]:
        waiting = list(enumerate(jobs))[::-1]  # popped from the end: the given order
        tries = [0] * len(waiting)
        running: dict = {}  # future -> (index, job)
        while waiting or running:
            while waiting and len(running) < len(self.devices):
                index, job = waiting.pop()
                running[self.pool.submit(_call_in_worker, fn, job)] = (index, job)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                done = set(running)  # every running job died with the pool
                self.pool.shutdown(wait=True)
                self.pool = self._new_pool()
            for fut in done:
                index, job = running.pop(fut)
                tries[index] += 1
                exc = fut.exception()
                if exc is None:
                    yield job, Outcome(result=fut.result())
                elif tries[index] > self.max_retries:
                    yield job, Outcome(error=_worker_error(exc))
                else:
                    waiting.append((index, job))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _worker_error(exc: BaseException) -> str:
    if isinstance(exc, BrokenProcessPool):
        return "the worker process died (killed, out of memory, or a crash in native code)"
    return _one_line(exc)


# -- Ray ----------------------------------------------------------------------------------------------------

def _import_ray():
    try:
        import ray
    except ImportError:
        raise NaoWsError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install 'ray[default]')") from None
    return ray


def _check_address(address: str) -> None:
    """``auto``, or ``HOST:PORT`` that accepts a TCP connection within a few seconds."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise NaoWsError(f"--ray-address {address}: expected auto or HOST:PORT (the head's GCS port, 6379 by default)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise NaoWsError(f"--ray-address {address}: cannot reach a Ray head there ({_one_line(e)}); "
                         f"start one with 'ray start --head' or fix the address") from None


def _connect(ray, address: str | None) -> bool:
    """Connect to the cluster at ``address`` or start a local Ray instance; True when this call did either
    (and so must shut it down). A driver already connected (``ray.init`` done by the caller) is reused."""
    if address is not None:
        _check_address(address)
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, logging_level="warning")
    except ConnectionError as e:
        raise NaoWsError(f"--ray-address {address}: {_one_line(e)}") from None
    return True


def _ray_task(fn: CandidateFn, job, data) -> dict:
    """Runs inside a Ray worker: on the GPU Ray assigned to the task (it sets CUDA_VISIBLE_DEVICES), else CPU."""
    import ray

    device = torch.device("cuda" if ray.get_gpu_ids() else "cpu")
    return fn(job, data, device)


class RayExecutor:
    """One Ray task per job; the data goes into the object store once and every task reads it from there."""

    def __init__(self, data, address: str | None, use_gpus: bool, max_retries: int):
        self.ray = _import_ray()
        self.owns = _connect(self.ray, address)
        gpus = self.ray.cluster_resources().get("GPU", 0) if use_gpus else 0
        self.resources = {"num_gpus": 1} if gpus >= 1 else {"num_cpus": 1}  # one candidate per GPU (reference §4)
        self.max_retries = max_retries
        self.data_ref = self.ray.put(data)

    def map(self, fn: CandidateFn, jobs: Iterable) -> Iterator[tuple[Any, Outcome]]:
        task = self.ray.remote(max_retries=self.max_retries, retry_exceptions=True, **self.resources)(_ray_task)
        pending = {task.remote(fn, job, self.data_ref): job for job in jobs}
        while pending:
            (ref,), _ = self.ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            try:
                outcome = Outcome(result=self.ray.get(ref))
            except self.ray.exceptions.RayError as e:
                outcome = Outcome(error=_ray_error(e))
            yield job, outcome

    def close(self) -> None:
        if self.owns:
            self.ray.shutdown()


def _ray_error(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # RayTaskError wraps the candidate's own exception
    return _one_line(cause if isinstance(cause, BaseException) else exc)


# -- choice ---------------------------------------------------------------------------------------------------

def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _local_devices(device: torch.device, workers: int) -> tuple[list[str], int]:
    """(device of each worker process, torch threads per worker) for ``--workers`` > 1."""
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if device.index is not None:
            raise NaoWsError(f"--workers {workers} spreads candidates over cuda:0..{workers - 1}; "
                             f"use --device cuda or auto instead of --device {device}")
        if workers > visible:
            raise NaoWsError(f"--workers {workers} but only {visible} GPU(s) are visible: use --workers {visible} "
                             f"or fewer, or --executor ray for more machines")
        return [f"cuda:{i}" for i in range(workers)], 1
    cores = cpu_cores()
    if workers > cores:
        raise NaoWsError(f"--workers {workers} but only {cores} CPU core(s) are available to this process: "
                         f"use --workers {cores} or fewer")
    return ["cpu"] * workers, cores // workers


def check_settings(kind: str, workers: int, ray_address: str | None, max_retries: int) -> None:
    """Executor settings that cannot work, as one-line errors (before a run creates anything)."""
    if kind not in EXECUTORS:
        raise NaoWsError(f"--executor {kind} is unknown: use {' or '.join(EXECUTORS)}")
    if workers < 1 or max_retries < 0:
        raise NaoWsError("--workers must be >= 1 and --max-retries >= 0")
    if kind == "ray" and workers != 1:
        raise NaoWsError("--workers is for --executor local; a Ray run uses every GPU (or CPU) of the cluster")
    if kind != "ray" and ray_address is not None:
        raise NaoWsError("--ray-address needs --executor ray")


def make_executor(kind: str, workers: int, ray_address: str | None, max_retries: int, device: str, data):
    """The executor ``kind`` (local | ray) with its settings checked; wrong settings are one-line errors.

    ``device`` is the ``--device`` string: Ray tasks use the cluster's GPUs unless it is ``cpu`` (the
    driver's own node may have none); the local executor resolves it here.
    """
    check_settings(kind, workers, ray_address, max_retries)
    if kind == "ray":
        return RayExecutor(data, ray_address, device != "cpu", max_retries)
    if workers == 1:
        return SerialExecutor(data, resolve_device(device), max_retries)
    devices, threads = _local_devices(resolve_device(device), workers)
    return ProcessExecutor(data, devices, threads, max_retries)
