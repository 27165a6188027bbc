"""The standalone NAO search (paper Algorithm 1, SPEC 4): every candidate trained from scratch.

    round 0: ``pool_size`` unique random architectures of the 11-op ``cnn`` space (SPEC 1.2)
    every round: train each candidate of the round on the train split, score it on the dev split
                 (an executor: local or Ray, ``nao_ws.executors``); then, except after the last round,
                 fit the controller on every result so far, move the top-K seeds and decode new ones

Run folder: ``pool.jsonl`` (the candidates of each round, written once the round is decided),
``results.jsonl`` (one line per finished candidate, fsynced the moment it finishes), ``metrics.jsonl``
(one line per round), ``best.json``, ``checkpoints/`` (written whenever a round is decided: its
candidates and the controller that chose them, with its optimiser), ``tb/``.

Resume: the latest checkpoint says which rounds are decided, ``results.jsonl`` which candidates are done;
only the others are trained. Nothing random depends on the order candidates finish in: each candidate's
seed comes from (run seed, canonical architecture), the controller is fitted on results in pool order with
a seed from (run seed, round), and generation is deterministic; so a resumed run ends as an uninterrupted
one does.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from controller import config as ctrl_config
from supernet.spaces import get_space, parse_arch

from . import datasets, plot, train_cnn
from .config import RunConfig, config_to_dict, option, resolve
from .errors import NaoWsError
from .executors import Outcome, check_settings, make_executor
from .monitor import Monitor
from .strategies import ControllerDriver, canonical_text, unique_random
from .runs import RunDir, check_device, resolve_device, seed_everything

TASKS = ("cifar10", "cifar10-sample")  # SPEC 4: the search runs on CIFAR-10
CHECKPOINT_KIND = "standalone-search"
# SPEC 2.1, 2.2 (paper 4.1): K, the new architectures per round and the controller epochs are the
# controller's cnn preset (controller/config.py)
_, CTRL_TRAIN, CTRL_GENERATE = ctrl_config.preset("cnn")


@dataclass(frozen=True)
class Config(RunConfig):
    """Algorithm 1 at the scale of paper 4.1 / SPEC 4, and where its candidates train."""

    space: str = option("cnn", "search space: the standalone search runs the 11-op cnn space (SPEC 1.2)")
    dataset: str = option("", "image data: '' = the task's own, cifar10-sample = the bundled real sample")
    train_images: int = option(0, "train candidates on the first N images of the train split only (0: all)")
    amp: bool = option(False, "bf16 autocast while training candidates (CUDA only)")
    channels_last: bool = option(False, "channels-last memory format (CUDA only; CPU runs always are)")
    pool_size: int = option(600, "random architectures of the first round")  # SPEC 4
    new_per_round: int = option(CTRL_GENERATE.num_new, "architectures the controller generates for each later round")
    rounds: int = option(3, "L: rounds of candidate training (the first on the random pool)")  # SPEC 4
    seeds: int = option(CTRL_GENERATE.num_seeds, "K: top architectures the controller moves to generate new ones")
    controller_epochs: int = option(CTRL_TRAIN.epochs, "controller training epochs per round")
    epochs: int = option(25, "training epochs of each candidate")  # SPEC 4
    layers: int = option(3, "N: cells per stage of each candidate")  # SPEC 4
    channels: int = option(32, "F: channels of the first stage of each candidate")  # SPEC 4
    batch_size: int = option(128, "candidate batch size")  # SPEC 4
    lr: float = option(0.024, "candidate initial learning rate (cosine, SGD momentum 0.9)")  # SPEC 4
    executor: str = option("local", "where candidates train: local (this machine) or ray (a Ray cluster)")
    workers: int = option(1, "local executor: worker processes, one per GPU (or a share of the CPU cores)")
    ray_address: str | None = option(None, "ray executor: auto or HOST:PORT of a running cluster (default: start one)")
    max_retries: int = option(2, "retries of a failed candidate before it is recorded as failed")  # ours


PRESETS = {
    "paper": {},  # SPEC 4: 600 + 200 + 200 candidates, 25 epochs each, N = 3, F = 32
    # Same code path, tiny sizes: well under a minute on 2 CPU cores with the bundled sample.
    "smoke": {"dataset": "cifar10-sample", "train_images": 64, "pool_size": 6, "new_per_round": 3, "rounds": 2,
              "seeds": 3, "controller_epochs": 10, "epochs": 1, "layers": 1, "channels": 8, "batch_size": 32},
}


def task_defaults(task: str) -> dict:
    if task not in TASKS:
        raise NaoWsError(f"the standalone search (--space cnn) runs on {' or '.join(TASKS)}, not --task {task}")
    return {}


def check_config(cfg: Config) -> None:
    """Impossible option combinations and executor settings, as one-line errors."""
    task_defaults(cfg.task)
    check_settings(cfg.executor, cfg.workers, cfg.ray_address, cfg.max_retries)
    if cfg.space != "cnn":
        raise NaoWsError(f"the standalone search runs the cnn space (SPEC 1.2), not --space {cfg.space}")
    if cfg.dataset and cfg.dataset not in datasets.IMAGE_TASKS:
        raise NaoWsError(f"--dataset {cfg.dataset} is not an image dataset ({', '.join(datasets.IMAGE_TASKS)})")
    if min(cfg.pool_size, cfg.rounds, cfg.seeds, cfg.epochs, cfg.controller_epochs) < 1 or cfg.new_per_round < 0:
        raise NaoWsError("--pool-size, --rounds, --seeds, --epochs and --controller-epochs must be >= 1, "
                         "--new-per-round >= 0")
    if cfg.seeds > cfg.pool_size:
        raise NaoWsError(f"--seeds {cfg.seeds} exceeds --pool-size {cfg.pool_size}: the seeds are trained candidates")
    if cfg.train_images < 0:
        raise NaoWsError("--train-images must be >= 0 (0: the whole train split)")
    train_cnn.check_config(candidate_recipe(cfg))
    if cfg.executor != "ray":  # Ray workers may have GPUs the driver lacks
        check_device(cfg)


# -- candidates ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """One unit of work: everything a candidate's result depends on, besides the data."""

    text: str  # canonical text form (SPEC 7): the candidate's identity in every file
    recipe: train_cnn.Config
    seed: int


def train_candidate(c: Candidate, data: datasets.ImageData, device: torch.device) -> dict:
    """Train ``c`` from scratch on ``data.train`` and evaluate it on ``data.valid`` (SPEC 4)."""
    seed_everything(c.seed, c.recipe.deterministic)  # also in worker processes, which the driver's call misses
    return train_cnn.fit_candidate(parse_arch(c.text, "cnn"), data, c.recipe, device, c.seed)


def candidate_seed(run_seed: int, text: str) -> int:
    """A seed from (run seed, canonical architecture): results do not depend on scheduling order."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{text}".encode()).digest()[:7], "little")


def candidate_recipe(cfg: Config):
    """train_cnn's SPEC 4 candidate recipe (drop-path, aux head, weight decay, no cutout) at ``cfg``'s size."""
    flags = {"task": cfg.dataset or cfg.task, "data_dir": cfg.data_dir, "device": cfg.device, "seed": cfg.seed,
             "deterministic": cfg.deterministic, "space": cfg.space, "layers": cfg.layers, "channels": cfg.channels,
             "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "amp": cfg.amp,
             "channels_last": cfg.channels_last, "tf32": cfg.tf32}
    return resolve(train_cnn.Config, train_cnn.CANDIDATE_PRESETS, "standalone", None, flags)


def load_data(cfg: Config) -> datasets.ImageData:
    """The search split (train / dev, SPEC 4), the train part cut to ``train_images`` when set."""
    data = datasets.load_images(cfg.dataset or cfg.task, cfg.data_dir, purpose="search")
    if cfg.train_images:
        n = cfg.train_images
        data = replace(data, train=datasets.ImageSet(data.train.x[:n].clone(), data.train.y[:n].clone()))
    return data


def _derived_seed(run_seed: int, round_: int) -> int:
    return run_seed * 1000 + round_


# -- the search ----------------------------------------------------------------------------------------------

class StandaloneSearch:
    """The decided rounds (``pools``), the results so far and the controller; ``run`` below drives it."""

    def __init__(self, cfg: Config, run: RunDir, monitor: Monitor, candidate_fn: Callable):
        self.cfg, self.run, self.monitor, self.candidate_fn = cfg, run, monitor, candidate_fn
        self.space = get_space(cfg.space)
        self.device = _driver_device(cfg)
        self.controller = ControllerDriver.for_space(  # SPEC 2.1, 2.2 (paper 4.1 column)
            self.space, self.device, train={"epochs": cfg.controller_epochs},
            generate_={"num_new": cfg.new_per_round}, init_seed=cfg.seed)
        self.recipe = candidate_recipe(cfg)
        self.pools: list[list[dict]] = []  # per round: {"text", "origin", ...} of each candidate
        self.results: dict[str, dict] = {}  # text -> results.jsonl record

    # -- state ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Round 0: unique (canonical form) random architectures (Algorithm 1's initial X)."""
        known: set = set()
        unique_random(self.space, self.cfg.pool_size, known, np.random.default_rng(self.cfg.seed))
        self.pools = [[{"text": t, "origin": "random"} for t in sorted(known)]]
        self.decide_round()

    def restore(self, ckpt: dict) -> None:
        if ckpt.get("kind") != CHECKPOINT_KIND:
            raise NaoWsError(f"{self.run.path} holds a '{ckpt.get('kind')}' checkpoint, not a standalone search")
        self.pools = ckpt["pools"]
        self.controller.load_state_dict(ckpt["controller"])
        self.results = {r["text"]: r for r in self.run.read_jsonl("results.jsonl")}
        self._sync_logs()

    def decide_round(self) -> None:
        """Checkpoint the newly decided round, then list its candidates in pool.jsonl."""
        round_ = len(self.pools) - 1
        self.run.save_checkpoint({"kind": CHECKPOINT_KIND, "config": config_to_dict(self.cfg), "pools": self.pools,
                                  "controller": self.controller.state_dict()}, step=round_)
        self._write_pool(round_)

    def _write_pool(self, round_: int) -> None:
        for entry in self.pools[round_]:
            arch = self.space.to_json(parse_arch(entry["text"], self.cfg.space))
            self.run.append_jsonl("pool.jsonl", {"round": round_, **entry, "arch": arch,
                                                 "seed": candidate_seed(self.cfg.seed, entry["text"])})

    def _sync_logs(self) -> None:
        """Make pool.jsonl and metrics.jsonl match the checkpoint: a killed run may have written a round's
        pool only in part, or the metrics of a round whose controller fit the checkpoint does not hold."""
        written = Counter(r["round"] for r in self.run.read_jsonl("pool.jsonl"))
        complete = next((r for r, pool in enumerate(self.pools) if written[r] != len(pool)), len(self.pools))
        self.run.truncate_jsonl("pool.jsonl", sum(len(pool) for pool in self.pools[:complete]))
        for round_ in range(complete, len(self.pools)):
            self._write_pool(round_)
        decided = len(self.pools) - 1  # rounds whose metrics line precedes the checkpoint
        self.run.truncate_jsonl("metrics.jsonl", sum(r["round"] < decided for r in self.run.read_jsonl("metrics.jsonl")))

    # -- one round -----------------------------------------------------------------------------------------
    def train_round(self, round_: int, executor, bar) -> None:
        """Train every unfinished candidate of the round; record each result the moment it arrives."""
        todo = [Candidate(e["text"], self.recipe, candidate_seed(self.cfg.seed, e["text"]))
                for e in self.pools[round_] if e["text"] not in self.results]
        for job, outcome in executor.map(self.candidate_fn, todo):
            record = self._record(round_, job, outcome)
            self.run.append_jsonl("results.jsonl", record)
            self.results[job.text] = record
            if not outcome.ok:
                self.run.log(f"candidate failed after {self.cfg.max_retries} retries: {job.text}: {outcome.error}")
            best = self.best()
            bar.update(1)
            bar.set_postfix(best=f"{best['score']:.4f}" if best else "-")
            if best:
                self.monitor.scalar("candidates/best_score", best["score"], len(self.results))

    def _record(self, round_: int, job: Candidate, outcome: Outcome) -> dict:
        head = {"round": round_, "text": job.text, "seed": job.seed}
        if not outcome.ok:
            return {**head, "status": "failed", "error": outcome.error}
        return {**head, "status": "ok", "score": float(outcome.result["valid_acc"]), **outcome.result}

    def finish_round(self, round_: int) -> dict:
        """Round statistics, best.json, TensorBoard; then (except after the last round) the controller."""
        scored = self.scored()
        if not scored:
            first = next(r["error"] for r in self.results.values() if r["status"] == "failed")
            raise NaoWsError(f"every candidate failed (first error: {first}); see log.txt in {self.run.path}")
        mine = [self.results[e["text"]] for e in self.pools[round_]]
        scores = [r["score"] for r in mine if r["status"] == "ok"]
        best = self.best()
        stats = {"best": max(scores, default=math.nan), "mean": float(np.mean(scores)) if scores else math.nan,
                 "trained": len(scores), "failed": len(mine) - len(scores), "best_so_far": best["score"]}
        self.monitor.scalars(stats, round_, prefix="round/")
        self.monitor.image("best/cells", plot.render(parse_arch(best["text"], self.cfg.space)), round_)
        self.run.write_json("best.json", self.best_record())
        metrics = {"round": round_, **stats, "best_arch": best["text"]}
        if round_ + 1 < self.cfg.rounds:
            metrics.update(self.next_round(round_, scored))
            self.run.append_jsonl("metrics.jsonl", metrics)
            self.decide_round()
        else:
            self.run.append_jsonl("metrics.jsonl", metrics)
        return metrics

    def next_round(self, round_: int, scored: list[dict]) -> dict:
        """Fit the controller on every result, generate the next round from the top-K (Algorithm 1)."""
        archs = [parse_arch(r["text"], self.cfg.space) for r in scored]
        scores = [r["score"] for r in scored]
        fitted = self.controller.fit(archs, scores, seed=_derived_seed(self.cfg.seed, round_), monitor=self.monitor,
                                     desc=f"controller (round {round_ + 1})")
        self.monitor.scalars(fitted, round_, prefix="controller/")
        known = {e["text"] for pool in self.pools for e in pool}  # canonical texts
        new = self.controller.generate(archs, scores, known, num_seeds=self.cfg.seeds)
        self.pools.append([{"text": canonical_text(self.space, c.arch), "origin": "nao",
                            "predicted": float(c.predicted), "eta": float(c.step_size)} for c in new])
        made = {"generated": len(new), "eta_mean": float(np.mean([c.step_size for c in new])) if new else math.nan}
        self.monitor.scalars(made, round_, prefix="generate/")
        return {**{f"controller_{k}": v for k, v in fitted.items()}, **made}

    # -- queries -------------------------------------------------------------------------------------------
    def scored(self) -> list[dict]:
        """Successful results in pool order (rounds, then candidates): independent of finishing order."""
        return [self.results[e["text"]] for pool in self.pools for e in pool
                if self.results.get(e["text"], {}).get("status") == "ok"]

    def best(self) -> dict | None:
        """The best successful result (ties: the earlier in pool order)."""
        return max(self.scored(), key=lambda r: r["score"], default=None)

    def best_record(self) -> dict:
        best = self.best()
        arch = parse_arch(best["text"], self.cfg.space)
        return {"arch": self.space.to_json(arch), "text": best["text"], "score": best["score"],
                "round": best["round"], "valid_loss": best.get("valid_loss"), "params": best.get("params")}

    def planned(self) -> int:
        return self.cfg.pool_size + self.cfg.new_per_round * (self.cfg.rounds - 1)


def _driver_device(cfg: Config) -> torch.device:
    """Where the controller runs: the driver of a Ray run may sit on a node without GPUs."""
    if cfg.executor == "ray":
        return torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    return resolve_device(cfg.device)


def _open(search: StandaloneSearch, resume: bool) -> StandaloneSearch:
    """Restore the search from the run folder's latest checkpoint, or start it."""
    ckpt = search.run.resume_checkpoint() if resume else None
    if ckpt is None:
        search.start()
        search.run.log(f"started: {search.cfg.task}, standalone search, executor {search.cfg.executor}")
    else:
        search.restore(ckpt)
        search.run.log(f"resumed at round {len(search.pools) - 1} with {len(search.results)} finished candidates")
    return search


def run(cfg: Config, run: RunDir, monitor: Monitor, resume: bool = False,
        candidate_fn: Callable = train_candidate) -> dict:
    """Run (or resume) Algorithm 1 in ``run``; return the best candidate's record with the run's counts.

    ``candidate_fn(candidate, data, device) -> {"valid_acc", ...}`` trains one candidate; it must be a
    pure function of its arguments (tests pass their own to count or crash trainings).
    """
    check_config(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    executor = make_executor(cfg.executor, cfg.workers, cfg.ray_address, cfg.max_retries, cfg.device,
                             load_data(cfg))
    try:
        search = _open(StandaloneSearch(cfg, run, monitor, candidate_fn), resume)
        with monitor.bar(total=search.planned(), initial=len(search.results), desc="candidates", leave=True) as bar:
            for round_ in range(len(search.pools) - 1, cfg.rounds):
                search.train_round(round_, executor, bar)
                metrics = search.finish_round(round_)
                monitor.write(f"round {round_ + 1}/{cfg.rounds}: best {metrics['best']:.4f}, "
                              f"mean {metrics['mean']:.4f}, {metrics['failed']} failed")
    finally:
        executor.close()
        monitor.flush()
    failed = sum(r["status"] == "failed" for r in search.results.values())
    return {**search.best_record(), "trained": len(search.results) - failed, "failed": failed}
