"""Conventions every training loop shares: the search's supernet epochs, final CNN and RNN training, and
the short trainings of candidates (``fit_candidate``).

Divergence, one policy: a step whose loss or gradient is not finite changes nothing (the ``train_step``
functions skip its update). More than ``max_nan_steps`` such steps in a row raise :class:`Diverged`; the
loop rolls back to its last checkpoint (the run folder's, or the one kept in memory without a run folder)
and goes on with its learning rate times ``ROLLBACK_LR_FACTOR``. The rollbacks of a run are counted in its
checkpoints; after ``MAX_ROLLBACKS`` the run stops with a one-line error.

Randomness: :func:`seeded` runs a candidate's training on torch's generators forked and seeded, so the
caller's random stream (a search's, which its checkpoints record) is left as it was.

Checkpoints, one layout: ``{"kind", "config"``, what identifies the run (``"arch"``, ``"vocab"``), one entry
per part's ``state_dict()`` (``"trainer"``; a search's ``"state"``, ``"task"``, ``"controller"``)``, "rng"}``.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import torch

from .errors import NaoWsError
from .runs import RunDir

MAX_NAN_STEPS = 20  # non-finite steps in a row before a rollback (ours)
ROLLBACK_LR_FACTOR = 0.5  # lr multiplier after a rollback (ours; ref-TF also lowers the lr)
MAX_ROLLBACKS = 5  # rollbacks in one run before it stops with an error instead of looping (ours)
SYNC_EVERY = 10  # training steps between the host's looks at their results (one transfer for all; ours)


class Diverged(Exception):
    """More than ``max_nan_steps`` non-finite steps in a row."""


class EpochStats:
    """Mean loss and accuracy of an epoch's finite steps and the count of skipped ones; raises
    :class:`Diverged` after more than ``max_nan_steps`` non-finite steps in a row, or at the end of an epoch
    none of whose steps was finite.

    Results may be device tensors (``train_step(sync=False)``): they are read every ``SYNC_EVERY`` steps
    and at the end, in one transfer, and judged in order, so the decision is the one a per-step check
    would take, up to ``SYNC_EVERY - 1`` steps later (a rollback discards those steps with the rest).
    ``state_dict`` lets a checkpoint taken mid-epoch carry the counts."""

    def __init__(self, max_nan_steps: int):
        self.max_nan_steps, self.run, self.skipped = max_nan_steps, 0, 0
        self.loss = self.acc = 0.0
        self.n = 0
        self.pending: list[tuple] = []

    def add(self, finite, loss, acc=float("nan")) -> None:
        self.pending.append((finite, loss, acc))
        if len(self.pending) >= SYNC_EVERY or not isinstance(finite, torch.Tensor):  # numbers: judged at once
            self.flush()

    def flush(self) -> None:
        values = [v for record in self.pending for v in record]
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        read = iter(torch.stack([t.float() for t in tensors]).tolist() if tensors else [])
        values = [next(read) if isinstance(v, torch.Tensor) else v for v in values]
        self.pending = []
        for i in range(0, len(values), 3):
            self._judge(bool(values[i]), values[i + 1], values[i + 2])

    def _judge(self, finite: bool, loss: float, acc: float) -> None:
        if not finite:
            self.skipped += 1
            self.run += 1
            if self.run > self.max_nan_steps:
                raise Diverged(f"{self.run} non-finite losses in a row")
            return
        self.run = 0
        self.n += 1
        self.loss += loss
        self.acc += acc

    def means(self) -> dict:
        self.flush()
        if self.n == 0 and self.skipped:
            raise Diverged(f"all {self.skipped} steps of the epoch had non-finite losses")
        n = max(self.n, 1)
        return {"loss": self.loss / n, "acc": self.acc / n, "nan_skipped": self.skipped}

    def state_dict(self) -> dict:
        self.flush()
        return {"run": self.run, "skipped": self.skipped, "loss": self.loss, "acc": self.acc, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        self.run, self.skipped, self.loss, self.acc, self.n = (state[k] for k in ("run", "skipped", "loss", "acc", "n"))
        self.pending = []


def next_rollback(rollbacks: int, why: str) -> int:
    """The run's rollback count after one more; a one-line error once ``MAX_ROLLBACKS`` are spent."""
    if rollbacks >= MAX_ROLLBACKS:
        raise NaoWsError(f"training diverged {MAX_ROLLBACKS + 1} times ({why}); lower --lr and start again")
    return rollbacks + 1


class Checkpoints:
    """Where a training loop keeps its checkpoints: the run folder, or (no run folder) the last one in memory."""

    def __init__(self, run: RunDir | None):
        self.run = run
        self._last: dict | None = None

    def save(self, state: dict, step: int, logs: tuple[str, ...] = ()) -> None:
        """``logs``: the run folder's append-only logs the checkpoint holds (``RunDir.save_checkpoint``). A run
        folder's checkpoint is written off the training thread (serialising, hashing and fsyncing a large model
        would stall the GPU); ``latest`` and the next save wait for it."""
        if self.run is not None:
            self.run.save_checkpoint(state, step, logs=logs, background=True)
        else:
            self._last = copy.deepcopy(state)

    def latest(self) -> dict:
        return self.run.load_latest_checkpoint("cpu") if self.run is not None else self._last


@contextmanager
def seeded(seed: int, device: torch.device):
    """torch's CPU generator and ``device``'s, forked and seeded with ``seed`` for the block."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield
