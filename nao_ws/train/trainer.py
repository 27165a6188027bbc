"""What every training loop shares: the final CNN and RNN trainings (one :class:`Trainer` skeleton), the
searches' short candidate trainings (``fit_candidate``) and the supernet's training in a search.

Divergence, one policy: a step whose loss or gradient is not finite changes nothing (the ``train_step``
functions skip its update). More than ``max_nan_steps`` such steps in a row raise :class:`Diverged`; the
loop rolls back to its last checkpoint (the run folder's, or the one kept in memory without a run folder)
and goes on with its learning rate times ``ROLLBACK_LR_FACTOR`` (:class:`RollsBack`). The rollbacks of a run
are counted in its checkpoints; after ``MAX_ROLLBACKS`` the run stops with a one-line error.

Randomness: :func:`seeded` runs a candidate's training on torch's generators forked and seeded, so the
caller's random stream (a search's, which its checkpoints record) is left as it was.

Checkpoints, one layout: ``{"kind", "config"``, what identifies the run (``"arch"``, ``"vocab"``), one entry
per part's ``state_dict()`` (``"trainer"``; a search's ``"driver"``, ``"source"``, ``"strategy"``)``, "rng"}``.

Data-parallel (``distributed.Processes``): every process trains; rank 0 alone writes checkpoints, logs, progress
bars and TensorBoard events, and reads a checkpoint to send it to the others. A final training's checkpoint
then also holds ``"processes"`` (how many wrote it) and ``"process_rng"`` (each process's random state).
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager

import torch

from ..config.options import config_to_dict
from ..errors import NaoWsError
from ..monitor import Monitor
from ..runs import RunDir, rng_state, set_rng_state
from .distributed import SINGLE, Processes

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


class RollsBack:
    """The divergence policy, for anything that trains and checkpoints (a :class:`Trainer`, a search): back
    to the last checkpoint, then on with the learning rate lowered. The owner keeps ``rollbacks`` in its
    checkpoints and provides ``latest_checkpoint``, ``restore``, ``lower_lr``, ``position`` and ``warn``."""

    rollbacks: int = 0

    def roll_back(self, why: str) -> None:
        rollbacks = self.rollbacks + 1
        if rollbacks > MAX_ROLLBACKS:
            raise NaoWsError(f"training diverged {rollbacks} times ({why}); lower --lr and start again")
        failed_at = self.position()
        self.restore(self.latest_checkpoint())
        self.rollbacks = rollbacks
        self.lower_lr(ROLLBACK_LR_FACTOR)
        self.warn(f"{why} at {failed_at}: rolled back to {self.position()}, learning rate now "
                  f"x{ROLLBACK_LR_FACTOR ** rollbacks:g} of the recipe's")


class Checkpoints:
    """Where a training loop keeps its checkpoints: the run folder, or (no run folder) the last one in memory.
    With several processes, rank 0 keeps them and ``latest`` sends its checkpoint to every process."""

    def __init__(self, run: RunDir | None, procs: Processes = SINGLE):
        self.run, self.procs = run, procs
        self._last: dict | None = None

    def save(self, state: dict, step: int, logs: tuple[str, ...] = ()) -> None:
        """``logs``: the run folder's append-only logs the checkpoint holds (``RunDir.save_checkpoint``). A run
        folder's checkpoint is written off the training thread (serialising, hashing and fsyncing a large model
        would stall the GPU); ``latest`` and the next save wait for it. Only rank 0 keeps one."""
        if not self.procs.main:
            return
        if self.run is not None:
            self.run.save_checkpoint(state, step, logs=logs, background=True)
        else:
            self._last = copy.deepcopy(state)

    def latest(self) -> dict:
        state = None
        if self.procs.main:
            state = self.run.load_latest_checkpoint("cpu") if self.run is not None else self._last
        return self.procs.broadcast(state)


class Trainer(RollsBack):
    """The skeleton of a final training (and of a candidate's short one): ``train_epoch`` until ``finished``,
    ``end_epoch`` and a checkpoint after each epoch, a divergence rolled back. Subclasses add the network, its
    data and recipe: ``kind`` (the checkpoint's), ``identity`` (what a checkpoint must match), ``step`` (the
    checkpoint's number), ``finished``, ``train_epoch``, ``end_epoch``, ``lower_lr``, ``position`` and the
    ``state_dict`` pair. With a run folder, checkpoints go there; without one the last is kept in memory.
    ``procs``: the processes of a data-parallel training; ``state_dict`` is called on all of them at once (it may
    gather what each holds) and must return the state of the whole training."""

    kind: str

    def __init__(self, cfg, run: RunDir | None, monitor: Monitor | None, procs: Processes = SINGLE):
        self.cfg, self.run, self.procs = cfg, run, procs
        self.monitor = monitor or Monitor(None, progress=False)
        self.checkpoints = Checkpoints(run, procs)
        self.rollbacks = 0

    def fit(self) -> None:
        """Train until ``finished``, checkpointing after each epoch."""
        while not self.finished():
            start = time.perf_counter()
            try:
                record = self.train_epoch()
            except Diverged as e:
                self.roll_back(str(e))
                continue
            self.end_epoch({**record, "seconds": round(time.perf_counter() - start, 3)})
            self.checkpoint()

    def checkpoint(self) -> None:
        state = {"kind": self.kind, "config": config_to_dict(self.cfg), **self.identity(),
                 "trainer": self.state_dict(), "rng": rng_state()}
        if self.procs.world > 1:
            state.update(processes=self.procs.world, process_rng=self.procs.gather(state["rng"]))
        self.checkpoints.save(state, self.step, logs=("metrics.jsonl",))

    def restore(self, state: dict) -> None:
        mine = self.identity()
        if state.get("kind") != self.kind or any(state.get(k) != v for k, v in mine.items()):
            where = self.run.path if self.run is not None else "the checkpoint"
            what = ", ".join(k for k, v in mine.items() if state.get(k) != v) or "kind"
            raise NaoWsError(f"{where} holds a checkpoint of another training ({what} differ: a "
                             f"'{state.get('kind')}' one); continue it with the command that wrote it")
        self.load_state_dict(state["trainer"])
        saved = state.get("processes", 1)
        if saved == self.procs.world:
            set_rng_state(state["process_rng"][self.procs.rank] if saved > 1 else state["rng"])
        else:  # each process's random stream cannot be carried over to another number of processes
            set_rng_state(state["rng"])
            self.procs.seed(self.cfg.seed, self.step + 1)
            self.log(f"resumed with {self.procs.world} process{'es' * (self.procs.world > 1)} from a checkpoint of "
                     f"{saved}: the data order and schedule continue exactly; dropout and drop-path draw fresh random "
                     "streams")

    def resume(self) -> None:
        """Continue from the run folder's latest checkpoint (rank 0 reads it and sends it to the others)."""
        state = self.run.resume_checkpoint() if self.procs.main else None
        state = self.procs.broadcast(state)
        self.restore(state)
        if self.run is not None:
            self.run.restore_logs(state)

    def latest_checkpoint(self) -> dict:
        return self.checkpoints.latest()

    def warn(self, message: str) -> None:
        self.monitor.write(message)
        if self.run is not None:
            self.run.log("WARNING " + message)

    def log(self, message: str) -> None:
        self.monitor.write(message)
        if self.run is not None:
            self.run.log(message)


@contextmanager
def seeded(seed: int, device: torch.device):
    """torch's CPU generator and ``device``'s, forked and seeded with ``seed`` for the block."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield
