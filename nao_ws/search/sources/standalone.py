"""Standalone training as the score source (paper Algorithm 1, reference §4): every candidate of the 11-op
``cnn`` space (reference §1.2) trained from scratch on the train split and scored by its dev accuracy, by an
executor (``executors``: here, in worker processes, or on Ray), one candidate per GPU at a time.

Results arrive as candidates finish, in any order; the driver writes each to ``pool.jsonl`` the moment it
exists, so a resumed search trains only the candidates without a result. Nothing random depends on that
order: a candidate's seed comes from (run seed, canonical architecture), so a retried or resumed candidate
trains exactly as it would have.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from supernet.spaces import get_space, parse_arch

from ...config.options import resolve
from ...data.images import ImageData, ImageSet, load_images
from ...data.tasks import IMAGE_TASKS
from ...errors import NaoWsError
from ...runs import check_device, resolve_device, seed_everything
from ...train import cnn as train_cnn
from ...train.options import CANDIDATE_PRESETS, CnnTrainConfig
from ..strategies import canonical_text
from . import ScoreSource
from .executors import check_settings, make_executor

TASKS = ("cifar10", "cifar10-sample")  # reference §4: the search runs on CIFAR-10


@dataclass(frozen=True)
class Candidate:
    """One unit of work: everything a candidate's result depends on, besides the data."""

    text: str  # text form (reference §7)
    recipe: CnnTrainConfig
    seed: int


def train_candidate(c: Candidate, data: ImageData, device: torch.device) -> dict:
    """Train ``c`` from scratch on ``data.train`` and evaluate it on ``data.valid`` (reference §4)."""
    seed_everything(c.seed, c.recipe.deterministic)  # also in worker processes, which the driver's call misses
    return train_cnn.fit_candidate(parse_arch(c.text, "cnn"), data, c.recipe, device, c.seed)


def candidate_seed(run_seed: int, text: str) -> int:
    """A seed from (run seed, canonical architecture): results do not depend on scheduling order."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{text}".encode()).digest()[:7], "little")


def candidate_recipe(cfg) -> CnnTrainConfig:
    """The reference §4 candidate recipe (drop-path, aux head, weight decay, no cutout) at ``cfg``'s size."""
    flags = {"task": cfg.dataset or cfg.task, "data_dir": cfg.data_dir, "device": cfg.device, "seed": cfg.seed,
             "deterministic": cfg.deterministic, "space": cfg.space, "layers": cfg.layers, "channels": cfg.channels,
             "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "amp": cfg.amp,
             "channels_last": cfg.channels_last, "tf32": cfg.tf32}
    return resolve(CnnTrainConfig, CANDIDATE_PRESETS, "standalone", None, flags)


def load_data(cfg) -> ImageData:
    """The search split (train / dev, reference §4), the train part cut to ``train_images`` when set."""
    data = load_images(cfg.dataset or cfg.task, cfg.data_dir, purpose="search")
    if cfg.train_images:
        n = cfg.train_images
        data = replace(data, train=ImageSet(data.train.x[:n].clone(), data.train.y[:n].clone()))
    return data


def check_config(cfg) -> None:
    """Impossible option combinations and executor settings, as one-line errors."""
    if cfg.task not in TASKS:
        raise NaoWsError(f"the standalone search (--space cnn) runs on {' or '.join(TASKS)}, not --task {cfg.task}")
    if cfg.space != "cnn":
        raise NaoWsError(f"the standalone search trains the 11-op cnn space (reference §1.2), not --space {cfg.space}")
    if cfg.dataset and cfg.dataset not in IMAGE_TASKS:
        raise NaoWsError(f"--dataset {cfg.dataset} is not an image dataset ({', '.join(IMAGE_TASKS)})")
    check_settings(cfg.executor, cfg.workers, cfg.ray_address, cfg.max_retries)
    if cfg.strategy == "nao" and cfg.seeds > cfg.pool_size:
        raise NaoWsError(f"--seeds {cfg.seeds} exceeds --pool-size {cfg.pool_size}: the seeds are trained candidates")
    train_cnn.check_config(candidate_recipe(cfg))
    if cfg.executor != "ray":  # Ray workers may have GPUs the driver lacks
        check_device(cfg)


class StandaloneSource(ScoreSource):
    """Round 0 trains ``pool_size`` random candidates, each later round the strategy's ``new_per_round``;
    ``rounds`` rounds in all. ``candidate_fn(candidate, data, device) -> {"valid_acc", ...}`` trains one; it
    must be a pure function of its arguments (tests pass their own to count or crash trainings)."""

    def __init__(self, cfg, candidate_fn: Callable = train_candidate):
        self.cfg, self.candidate_fn, self.space = cfg, candidate_fn, get_space(cfg.space)
        self.initial, self.total = cfg.pool_size, cfg.pool_size + cfg.new_per_round * (cfg.rounds - 1)
        self.recipe = candidate_recipe(cfg)
        self.device = _driver_device(cfg)
        self.executor = make_executor(cfg.executor, cfg.workers, cfg.ray_address, cfg.max_retries, cfg.device,
                                      load_data(cfg))

    def round_size(self, strategy, scored: int) -> int:
        return self.cfg.new_per_round

    def finished(self, rounds: int, scored: int) -> bool:
        return rounds >= self.cfg.rounds

    def score(self, archs: Sequence, monitor):
        seed, space = self.cfg.seed, self.space
        jobs = [Candidate(space.format(a), self.recipe, candidate_seed(seed, canonical_text(space, a))) for a in archs]
        index = {job: i for i, job in enumerate(jobs)}
        for job, outcome in self.executor.map(self.candidate_fn, jobs):
            if outcome.ok:
                yield [(index[job], {"score": float(outcome.result["valid_acc"]), **outcome.result,
                                     "seed": job.seed})]
            else:
                yield [(index[job], {"score": None, "failed": outcome.error, "seed": job.seed})]

    def close(self) -> None:
        self.executor.close()


def _driver_device(cfg) -> torch.device:
    """Where the controller runs: the driver of a Ray run may sit on a node without GPUs."""
    if cfg.executor == "ray":
        return torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    return resolve_device(cfg.device)
