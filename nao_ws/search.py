"""The NAO-WS search loop (paper 3.4, SPEC 2-3), one loop for CIFAR-10 (``cnn-ws``) and PTB (``rnn``).

    pool ──one random arch per minibatch──► supernet training (``eval_every`` epochs)
      ▲                                            │
      │                     scoring of the pool with inherited weights (fixed dev data)
      │                                            │
      │        controller fit on every scored architecture (strategy ``nao`` only)
      │                                            │
      └── pool update ◄── generation from the top-K seeds (``nao``) or random sampling (``random``)

At the end the top ``rerank_top`` architectures are re-ranked by short standalone training.

The loop is a small state machine over phases (train, score, controller, generate, rerank, done). A
checkpoint is written after every phase and every ``checkpoint_every`` epochs, holding the supernet,
optimiser, data-iterator and controller states, the pool, every RNG state and the lengths of the
append-only logs; ``--resume`` restores it and replays from there, so a run killed at any moment
ends, with ``--deterministic`` on CPU, exactly as an uninterrupted one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from controller import config as ctrl_config
from supernet import rnn
from supernet.spaces import get_space, parse_arch

from . import plot, recipes
from .config import RunConfig, config_to_dict, option
from .datasets import IMAGE_TASKS, TEXT_TASKS
from .errors import NaoWsError
from .monitor import Monitor
from .runs import (RunDir, check_device, generator_state, rng_state, seed_everything, set_generator_state,
                   set_rng_state)
from .search_tasks import make_task
from .strategies import ControllerDriver, canonical_text, unique_random
from .training import MAX_NAN_STEPS, ROLLBACK_LR_FACTOR, Diverged, next_rollback

# SPEC 2.1, 2.2: K and the controller epochs are the controller's (controller/config.py; cnn-ws and rnn alike)
_, CTRL_TRAIN, CTRL_GENERATE = ctrl_config.preset("cnn-ws")


@dataclass(frozen=True)
class SearchConfig(RunConfig):
    """Options of the loop itself, shared by both tasks."""

    space: str = option("cnn-ws", "search space: cnn-ws (CIFAR) or rnn (PTB); cnn runs the standalone search")
    strategy: str = option("nao", "nao (controller generation) or random (Random-WS baseline, same budget)")
    epochs: int = option(150, "supernet training epochs")  # SPEC 3.1
    eval_every: int = option(30, "score the pool and update it every this many epochs")  # SPEC 3.1
    pool_size: int = option(1000, "architectures in the pool")  # SPEC 3.1 (ref-TF)
    new_per_iter: int = option(500, "new architectures per pool update (generated, or random for --strategy random)")
    random_per_iter: int = option(50, "random architectures added per pool update on top of the new ones")
    seeds: int = option(CTRL_GENERATE.num_seeds, "K: top architectures the controller moves to generate new ones")
    controller_epochs: int = option(CTRL_TRAIN.epochs, "controller training epochs per iteration")
    controller_holdout: float = option(0.0, "fraction of the controller's data held out of its training for metrics "
                                       "(0: none; the metrics on each round's new architectures cost no data)")
    controller_data: str = option("pool", "what the controller is fitted on: pool (the current pool, scored by one "
                                  "supernet state, as both references; SPEC 3.1), all (every architecture scored "
                                  "so far, each with its latest score), rescore (all of them re-scored now)")
    rerank_top: int = option(5, "re-rank this many top architectures by short standalone training (0: off)")
    rerank_epochs: int = option(10, "epochs of each re-ranking training")  # SPEC 3.1 (ref-PT)
    rerank_batch_size: int = option(64, "batch size of the re-ranking training")  # SPEC 3.1 (ref-PT)
    checkpoint_every: int = option(1, "supernet epochs between checkpoints (phase ends always checkpoint)")
    max_nan_steps: int = option(MAX_NAN_STEPS, "non-finite losses in a row before rolling back to the last checkpoint")
    amp: bool = option(False, "bf16 autocast (CUDA only; the RNN cell itself stays float32)")
    dataset: str = option("", "image data: '' = the task's own, cifar10-sample = the bundled real sample")
    data_file: str | None = option(None, "an .npz of CIFAR images (x, y) to search on instead (last 500 = dev)")
    # Issue 15 (benchmarks/ws_ranking.py decides them): the references' behaviour vs ours before it.
    unsampled: str = option("skip", "weights off a step's sampled path: skip (left alone) or decay (weight decay "
                                    "and momentum reach every weight at every step, as in both references)")
    sampling: str = option("uniform", "architecture of each minibatch: uniform over the pool, balanced (probability "
                                      "proportional to its parameter count, the NAO authors' later code), or space "
                                      "(uniform over the whole space, as random search with weight sharing trains)")


@dataclass(frozen=True)
class ImageScoring:
    """How the pool is scored with inherited weights (issue 15)."""

    score_metric: str = option("accuracy", "what ranks architectures: accuracy (SPEC 3.1, both references) or loss "
                                           "(minus the cross-entropy on the same images, as the rnn search scores)")

    score_bn: str = option("batch", "BN while scoring: batch (statistics of each fixed scoring batch) or recalibrate "
                                    "(each architecture's statistics measured on --calib-images training images)")
    calib_images: int = option(500, "training images (un-augmented, the same for every architecture) that "
                                    "--score-bn recalibrate measures BN statistics on")


@dataclass(frozen=True)
class CnnSearchConfig(SearchConfig, recipes.CnnSupernet, ImageScoring):
    """The loop's options and the CIFAR-10 supernet recipe (SPEC 3.1, `paper` column)."""

    channels_last: bool = option(False, "channels-last memory format (CUDA only; CPU runs always are)")


@dataclass(frozen=True)
class Nb201SearchConfig(SearchConfig, recipes.Nb201Supernet, ImageScoring):
    """The loop's options and the NAS-Bench-201 supernet recipe (SPEC 8); ``--space nb201`` without
    ``--benchmark`` (with it, the search reads the table instead: ``nao_ws.tabular``)."""


@dataclass(frozen=True)
class RnnSearchConfig(SearchConfig, recipes.RnnSupernet):
    """The loop's options and the PTB supernet recipe (SPEC 3.2)."""

    cuda_graph: bool = option(False, "capture each architecture's training step into a CUDA graph (CUDA only)")


# Issue 15, decided on the NAS-Bench-201 supernet against the table (benchmarks/ws_ranking.py, cpu preset, README):
# size-balanced sampling ranked best (Kendall tau 0.10 / 0.11 with batch / recalibrated BN, against 0.07 / 0.04
# uniform); weight decay and momentum on unsampled weights (both references, SPEC 3.1) ranked as well as skipping
# them (0.05 / 0.08 against 0.07 / 0.04). BN recalibration while scoring ranked no better (mean 0.073 against
# 0.072) at 3x the scoring time, so scoring keeps batch statistics. Minus the loss ranked better than accuracy on
# the same images: tau +0.03 on average over 9 supernets in either BN mode, up to +0.15. The RNN keeps skip: its SGD
# has no momentum and lr x weight decay is 1.25e-7 a step (SPEC 3.2), so decay would cost a full update a step
# for nothing; it scores by loss already.
WS_CHOICES = {"unsampled": "decay", "sampling": "balanced", "score_metric": "loss"}

CNN_PRESETS = {
    "paper": WS_CHOICES,
    # SPEC 3.1, ref-PT column: its supernet recipe, a pool of 600 with 300 new (the controller's cnn-ws
    # preset, SPEC 2.2) and no random ones per update
    "ref-pt": {**recipes.CNN_REF_PT, "pool_size": 600, "new_per_iter": CTRL_GENERATE.num_new, "random_per_iter": 0,
               **WS_CHOICES},
    # Same code path, tiny sizes: a few minutes at most on 2 CPU cores with the bundled sample.
    "smoke": {"dataset": "cifar10-sample", "layers": 1, "channels": 8, "batch_size": 32, "epochs": 4,
              "eval_every": 2, "pool_size": 16, "new_per_iter": 8, "random_per_iter": 2, "seeds": 8,
              "controller_epochs": 30, "score_images": 50, "score_batch": 50, "aux_weight": 0.0,
              "rerank_top": 2, "rerank_epochs": 1, "rerank_layers": 1, "rerank_channels": 8,
              "rerank_batch_size": 64, **WS_CHOICES},
}
RNN_PRESETS = {
    "paper": {"epochs": 1000, "eval_every": 200, "new_per_iter": 300, "checkpoint_every": 5},  # SPEC 3.2
    "smoke": {"emb_size": 32, "batch_size": 16, "bptt": 20, "epochs": 4, "eval_every": 2, "pool_size": 16,
              "new_per_iter": 8, "random_per_iter": 2, "seeds": 8, "controller_epochs": 30,
              "score_windows": 16, "rerank_top": 2, "rerank_epochs": 1, "rerank_batch_size": 16},
}
# SPEC 8's network (C = 16, N = 5) and training recipe (the Nb201Supernet defaults) in the SPEC 3.1 loop: 150
# epochs, the pool scored every 30. Not in the SPEC: a pool sized for a space of 4,930 distinct cells, and K = 10
# seeds as the nb201 controller preset (controller/config.py). Re-ranking: the top 5 (SPEC 3.1) trained alone at
# the search's sizes.
NB201_PAPER = {"pool_size": 200, "new_per_iter": 100, "random_per_iter": 10, "seeds": 10, "rerank_batch_size": 256,
               **WS_CHOICES}
NB201_PRESETS = {
    "paper": NB201_PAPER,
    # 2 CPU cores, --data-file ../shared/data/cifar10/cifar10-train4000.npz (3,500 train, 500 dev images):
    # about 10 minutes, for benchmarks/ws_ranking.py (issue 15). A supernet epoch takes seconds here, so 60 of
    # them, each minibatch training a cell drawn from the whole space: mean tau 0.30 over 3 seeds, against 0.18
    # for 30 epochs of balanced sampling from the pool (measured together). Every dev image scores (mean tau
    # 0.07 -> 0.12 over 2 supernets against 250), with recalibrated BN (0.30 against 0.26 with batch statistics).
    "cpu": {**NB201_PAPER, "layers": 1, "channels": 8, "batch_size": 64, "epochs": 60, "eval_every": 4,
            "pool_size": 30, "new_per_iter": 15, "random_per_iter": 3, "controller_epochs": 100,
            "score_images": 500, "score_batch": 250, "score_bn": "recalibrate", "calib_images": 250, "rerank_top": 0,
            "sampling": "space"},
    # tests: seconds on the bundled sample
    "smoke": {"dataset": "cifar10-sample", "layers": 1, "channels": 4, "batch_size": 32, "epochs": 2,
              "eval_every": 1, "pool_size": 10, "new_per_iter": 4, "random_per_iter": 1, "seeds": 4,
              "controller_epochs": 10, "score_images": 50, "score_batch": 50, "calib_images": 32, "rerank_top": 1,
              "rerank_epochs": 1, "rerank_batch_size": 32, **WS_CHOICES},
}


CONTROLLER_DATA = ("pool", "all", "rescore")


def config_class(task: str, space: str | None = None):
    if space == "nb201":
        return Nb201SearchConfig
    return RnnSearchConfig if task in TEXT_TASKS else CnnSearchConfig


def presets(task: str, space: str | None = None) -> dict:
    if space == "nb201":
        return NB201_PRESETS
    return RNN_PRESETS if task in TEXT_TASKS else CNN_PRESETS


def task_defaults(task: str) -> dict:
    return {"space": "rnn"} if task in TEXT_TASKS else {"space": "cnn-ws"}


CHOICES = {"unsampled": ("skip", "decay"), "sampling": ("uniform", "balanced", "space"),
           "score_bn": ("batch", "recalibrate"), "score_metric": ("accuracy", "loss"),
           "controller_data": CONTROLLER_DATA, "cell_output": rnn.CELL_OUTPUTS}


def check_config(cfg: SearchConfig) -> None:
    """Impossible option combinations, as one-line errors."""
    image = cfg.task in IMAGE_TASKS
    if (image and cfg.space not in ("cnn-ws", "nb201")) or (not image and cfg.space != "rnn"):
        want = "cnn-ws or nb201 (or cnn for the standalone search)" if image else "rnn"
        raise NaoWsError(f"--task {cfg.task} searches the {want} space, not --space {cfg.space}")
    for name, allowed in CHOICES.items():
        value = getattr(cfg, name, allowed[0])
        if value not in allowed:
            raise NaoWsError(f"--{name.replace('_', '-')} {value} is unknown: use {' or '.join(allowed)}")
    if cfg.sampling == "balanced" and cfg.space == "rnn":
        raise NaoWsError("--sampling balanced weighs architectures by parameter count, which every rnn cell "
                         "shares: use --sampling uniform")
    if cfg.strategy not in ("nao", "random"):
        raise NaoWsError(f"--strategy {cfg.strategy} is unknown: use nao or random")
    if cfg.seeds > cfg.pool_size:
        raise NaoWsError(f"--seeds {cfg.seeds} exceeds --pool-size {cfg.pool_size}: the seeds come from the pool")
    if cfg.new_per_iter + cfg.random_per_iter > cfg.pool_size:
        raise NaoWsError(f"--new-per-iter + --random-per-iter ({cfg.new_per_iter + cfg.random_per_iter}) "
                         f"exceed --pool-size {cfg.pool_size}")
    if not 1 <= cfg.eval_every <= cfg.epochs:
        raise NaoWsError(f"--eval-every {cfg.eval_every} must be between 1 and --epochs {cfg.epochs}")
    if cfg.rerank_top > cfg.pool_size:
        raise NaoWsError(f"--rerank-top {cfg.rerank_top} exceeds --pool-size {cfg.pool_size}")
    if cfg.pool_size < 2 or cfg.checkpoint_every < 1:
        raise NaoWsError("--pool-size must be >= 2 and --checkpoint-every >= 1")
    if cfg.dataset and cfg.dataset not in IMAGE_TASKS:
        raise NaoWsError(f"--dataset {cfg.dataset} is not an image dataset ({', '.join(IMAGE_TASKS)})")
    if getattr(cfg, "cuda_graph", False) and cfg.deterministic:
        raise NaoWsError("--cuda-graph is not supported with --deterministic (the capture is written for the "
                         "default CUDA kernels): drop one of them")
    check_device(cfg)
    for name in ("channels", "rerank_channels") if cfg.space == "cnn-ws" else ():
        if getattr(cfg, name, 0) % 2:
            raise NaoWsError(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be even (factorized reduce halves it)")
    if getattr(cfg, "lr_min", 0) > cfg.lr:
        raise NaoWsError(f"--lr-min {cfg.lr_min} exceeds --lr {cfg.lr}: the SGDR schedule runs from --lr down to it")


# -- the search state ----------------------------------------------------------------------------------------

@dataclass
class State:
    """Everything that changes during a search, in checkpointable form (text forms, plain numbers)."""

    phase: str = "train"
    epoch: int = 0  # supernet epochs completed
    iteration: int = 0  # pool updates completed
    lr_scale: float = 1.0
    rollbacks: int = 0
    pool: list = field(default_factory=list)  # text forms
    origin: dict = field(default_factory=dict)  # text -> seed | nao | random
    scores: dict = field(default_factory=dict)  # text -> latest record (score, metrics, iteration, ...)
    rerank: list = field(default_factory=list)  # re-ranking results so far
    fresh: list = field(default_factory=list)  # text forms the last pool update added: no controller fit saw them
    checkpoints: int = 0  # checkpoints written: their file names count up with it

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _unique_random(space, n: int, known: set, rng: np.random.Generator) -> list:
    """Text forms of ``n`` random architectures whose canonical forms are not in ``known`` (updated)."""
    return [space.format(a) for a in unique_random(space, n, known, rng)]


LOGS = ("metrics.jsonl", "pool.jsonl")  # the append-only logs; a checkpoint holds their records
TB_GROUPS = {"train": "supernet/", "score": "pool/", "controller": "controller/", "generate": "generate/"}


class Search:
    """Holds the run's parts; ``run`` below drives the phases."""

    def __init__(self, cfg: SearchConfig, run: RunDir, monitor: Monitor):
        self.cfg, self.run, self.monitor = cfg, run, monitor
        self.space = get_space(cfg.space)
        self.device = check_device(cfg)
        self.task = make_task(cfg, self.device)
        self.controller = ControllerDriver.for_space(  # SPEC 2.1, 2.2 presets of the space
            self.space, self.device, train={"epochs": cfg.controller_epochs, "holdout": cfg.controller_holdout},
            generate_={"num_seeds": cfg.seeds, "num_new": cfg.new_per_iter}, init_seed=cfg.seed,
            canonical_inputs=cfg.space == "nb201")  # nb201: measured better (issue 13)
        self.rng = np.random.default_rng(cfg.seed)
        self.state = State()
        self.sizes: dict = {}  # text -> parameter count, for --sampling balanced

    # -- checkpoints -------------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        self.monitor.flush()
        self.state.checkpoints += 1
        self.run.save_checkpoint({
            "kind": "search", "config": config_to_dict(self.cfg), "state": self.state.to_dict(),
            "task": self.task.state_dict(), "controller": self.controller.state_dict(),
            "rng": rng_state(), "np_rng": generator_state(self.rng),
        }, step=self.state.checkpoints, logs=LOGS, background=True)  # written while the next phase runs

    def restore(self, ckpt: dict) -> None:
        self.state = State(**ckpt["state"])
        self.task.load_state_dict(ckpt["task"])
        self.controller.load_state_dict(ckpt["controller"])
        set_rng_state(ckpt["rng"])
        set_generator_state(self.rng, ckpt["np_rng"])
        self.run.restore_logs(ckpt)  # the logs as at this checkpoint: later lines go, cut ones come back
        # Several phases log at one epoch, and TensorBoard can only drop events from a step on: drop the
        # checkpoint's epoch too, and write the events of that epoch's finished phases again.
        self.monitor.drop_events_from(self.state.epoch)
        for record in self.run.read_jsonl("metrics.jsonl"):
            if record.get("epoch") == self.state.epoch:
                self.to_tensorboard(record)

    def log(self, record: dict) -> None:
        """A phase's record: a line of metrics.jsonl, and TensorBoard events at its epoch."""
        self.append("metrics.jsonl", record)
        self.to_tensorboard(record)

    def to_tensorboard(self, record: dict) -> None:
        """The events of a metrics.jsonl record; ``restore`` replays those of its checkpoint's epoch."""
        prefix = TB_GROUPS.get(record["phase"])
        if prefix is None:
            return
        epoch = record["epoch"]
        values = {k: math.nan if v is None else v for k, v in record.items() if k not in ("epoch", "iteration")}
        self.monitor.scalars(values, epoch, prefix)  # (metrics.jsonl holds NaN as null: strict JSON)
        if record["phase"] == "score":
            self.monitor.scalar("best/inherited_score", record["max"], epoch)
            self.monitor.image("best/cells", plot.render(parse_arch(record["best"], self.cfg.space)), epoch)

    def append(self, name: str, *records: dict) -> None:
        assert name in LOGS, name
        self.run.append_jsonl(name, *records)

    # -- phases ------------------------------------------------------------------------------------------
    def initial_pool(self) -> None:
        known: set = set()
        self.state.pool = _unique_random(self.space, self.cfg.pool_size, known, self.rng)
        self.state.origin = dict.fromkeys(self.state.pool, "seed")

    def train_epoch(self) -> None:
        s, pool = self.state, [parse_arch(t, self.cfg.space) for t in self.state.pool]
        if self.cfg.sampling == "balanced":  # ~ parameter count (ref-PT's later child_sample_policy "params")
            sizes = np.array([self.sizes.setdefault(t, self.task.arch_size(a)) for t, a in zip(s.pool, pool)], float)
            p = sizes / sizes.sum()
            pick = lambda: pool[int(self.rng.choice(len(pool), p=p))]  # noqa: E731
        elif self.cfg.sampling == "space":  # Li & Talwalkar 2019's random search with weight sharing
            pick = lambda: self.space.sample(self.rng)  # noqa: E731
        else:
            pick = lambda: pool[int(self.rng.integers(len(pool)))]  # noqa: E731  uniform over the pool (SPEC 3.1)
        metrics = self.task.train_epoch(s.epoch, pick, s.lr_scale, self.monitor)
        s.epoch += 1
        self.log({"phase": "train", "epoch": s.epoch, **metrics})
        if s.epoch % self.cfg.eval_every == 0 or s.epoch == self.cfg.epochs:
            s.phase = "score"

    def score(self) -> None:
        s = self.state
        archs = [parse_arch(t, self.cfg.space) for t in s.pool]
        results = self.task.score(archs, self.monitor)
        for text, arch, r in zip(s.pool, archs, results):
            s.scores[text] = {"arch": text, "canonical": canonical_text(self.space, arch), "iteration": s.iteration,
                              "epoch": s.epoch, "origin": s.origin[text], **r}
        self.append("pool.jsonl", *(s.scores[text] for text in s.pool))  # one write, one fsync
        values = np.array([r["score"] for r in results])
        top = np.sort(values)[::-1]
        stats = {"mean": float(values.mean()), "max": float(top[0]), "top10_mean": float(top[:10].mean())}
        best = s.pool[int(values.argmax())]
        self.log({"phase": "score", "epoch": s.epoch, "iteration": s.iteration, "best": best, **stats})
        self.run.write_json("best.json", self.best_record(best))
        s.phase = "controller" if s.epoch < self.cfg.epochs else "rerank"

    def fit_controller(self) -> None:
        """Train the controller on ``controller_data`` (SPEC 2.1, 3.1) and log metrics that cost no training
        data (SPEC 2.3 asks for held-out ones): before the fit, the last fit's predictor and decoder on the
        architectures new in this pool (``new_*``: none was fitted on, SPEC 2.3's held-out split for free);
        after it, the fit on its training set (``train_*``)."""
        s, space = self.state, self.cfg.space
        if self.cfg.strategy == "nao":
            texts, scores = self.controller_data()
            archs = [parse_arch(t, space) for t in texts]
            free = {}
            if s.iteration > 0 and len(s.fresh) >= 2:
                new = self.controller.evaluate([parse_arch(t, space) for t in s.fresh],
                                               [s.scores[t]["score"] for t in s.fresh])
                free = {"n_new": len(s.fresh), **{f"new_{k}": v for k, v in new.items()}}
            metrics = self.controller.fit(archs, scores, seed=self.cfg.seed * 1000 + s.iteration, monitor=self.monitor)
            fitted = self.controller.evaluate(archs, scores)
            if not metrics["n_holdout"]:  # held-out metrics of no architecture
                metrics = {k: v for k, v in metrics.items() if k not in fitted}
            free.update({f"train_{k}": v for k, v in fitted.items()})
            self.log({"phase": "controller", "epoch": s.epoch, "iteration": s.iteration, **metrics, **free})
        s.phase = "generate"

    def controller_data(self) -> tuple[list, list]:
        """Text forms and scores to fit on: the pool, just scored by the current supernet (``pool``, the
        references' choice, SPEC 3.1); every architecture scored so far with its latest score, older ones from
        less trained supernets (``all``); or all of them, the pool's scores reused and the others scored again
        now, so that one supernet state scores everything (``rescore``, at the cost of that scoring)."""
        s, how = self.state, self.cfg.controller_data
        texts = list(s.pool) if how == "pool" else list(s.scores)
        scores = {t: s.scores[t]["score"] for t in texts}
        if how == "rescore":
            pool = set(s.pool)
            old = [t for t in texts if t not in pool]
            if old:
                results = self.task.score([parse_arch(t, self.cfg.space) for t in old], self.monitor)
                scores.update((t, r["score"]) for t, r in zip(old, results))
        return texts, [scores[t] for t in texts]

    def update_pool(self) -> None:
        """New architectures (generated or random) + a random refill + the best of the old pool (SPEC 2.2)."""
        s, cfg = self.state, self.cfg
        known = {r["canonical"] for r in s.scores.values()}
        new = []
        if cfg.strategy == "nao":
            cands = self.controller.generate([parse_arch(t, cfg.space) for t in s.pool],
                                             [s.scores[t]["score"] for t in s.pool], known)
            new = [self.space.format(c.arch) for c in cands]
            etas = [c.step_size for c in cands] or [float("nan")]
            stats = {"new": len(new), "fraction_new": len(new) / cfg.new_per_iter,
                     "eta_mean": float(np.mean(etas)), "eta_max": float(np.max(etas)),
                     "predicted_mean": float(np.mean([c.predicted for c in cands])) if cands else float("nan")}
            self.log({"phase": "generate", "epoch": s.epoch, "iteration": s.iteration, **stats})
        origin = dict.fromkeys(new, "nao")
        # random refill, plus random stand-ins for whatever generation could not find (same budget)
        extra = _unique_random(self.space, cfg.new_per_iter - len(new) + cfg.random_per_iter, known, self.rng)
        origin.update(dict.fromkeys(extra, "random"))
        keep = sorted(s.pool, key=lambda t: -s.scores[t]["score"])[: cfg.pool_size - len(origin)]
        s.pool, s.fresh = keep + list(origin), list(origin)
        s.origin = {**{t: s.origin[t] for t in keep}, **origin}
        s.iteration += 1
        s.phase = "train"

    def rerank_next(self) -> None:
        """Short standalone training of the next of the top ``rerank_top`` architectures."""
        s = self.state
        top = sorted(s.pool, key=lambda t: -s.scores[t]["score"])[: self.cfg.rerank_top]
        if len(s.rerank) < len(top):
            text = top[len(s.rerank)]
            result = self.task.rerank(parse_arch(text, self.cfg.space), self.cfg.seed, self.monitor)
            s.rerank.append({"arch": text, "inherited_score": s.scores[text]["score"], **result})
            self.log({"phase": "rerank", **s.rerank[-1]})
            return
        self.run.write_json("best.json", self.best_record(_best_text(self)))
        s.phase = "done"

    def best_record(self, text: str) -> dict:
        arch = parse_arch(text, self.cfg.space)
        rerank = next((r for r in self.state.rerank if r["arch"] == text), None)
        return {"arch": self.space.to_json(arch), "text": text, "canonical": canonical_text(self.space, arch),
                "inherited": self.state.scores[text], "rerank": rerank, "epoch": self.state.epoch,
                "strategy": self.cfg.strategy}


PHASES = {"train": Search.train_epoch, "score": Search.score, "controller": Search.fit_controller,
          "generate": Search.update_pool, "rerank": Search.rerank_next}


def run(cfg: SearchConfig, run_dir: RunDir, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) a search in ``run_dir``; return the best architecture's record."""
    check_config(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    ckpt = run_dir.resume_checkpoint() if resume else None
    if ckpt is not None and ckpt.get("kind") != "search":
        raise NaoWsError(f"{run_dir.path} holds a '{ckpt.get('kind')}' checkpoint, not a search")
    monitor = Monitor(run_dir.path, progress=progress)
    search = Search(cfg, run_dir, monitor)
    if ckpt is not None:
        search.restore(ckpt)
        run_dir.log(f"resumed at epoch {search.state.epoch}, phase {search.state.phase}")
    else:
        search.initial_pool()
        run_dir.log(f"started: {cfg.task}, {cfg.space}, strategy {cfg.strategy}, on {search.device}")
        search.checkpoint()
    try:
        with monitor.bar(total=cfg.epochs, desc="search", initial=search.state.epoch, leave=True) as bar:
            while search.state.phase != "done":
                phase, epoch = search.state.phase, search.state.epoch
                try:
                    PHASES[phase](search)
                except Diverged as e:
                    _roll_back(search, run_dir, str(e))
                    continue
                bar.update(search.state.epoch - epoch)
                if phase != "train" or search.state.phase != "train" or search.state.epoch % cfg.checkpoint_every == 0:
                    search.checkpoint()
    finally:
        monitor.close()
        run_dir.wait()  # the last checkpoint is complete, or its error raised, before the run returns
    return search.best_record(_best_text(search))


def _best_text(search: Search) -> str:
    s = search.state
    if s.rerank:
        return max(s.rerank, key=lambda r: r["score"])["arch"]
    return max(s.pool, key=lambda t: s.scores[t]["score"])


def _roll_back(search: Search, run_dir: RunDir, why: str) -> None:
    """Reload the last checkpoint and continue with a lower learning rate (``training``'s divergence policy)."""
    rollbacks, lr_scale = next_rollback(search.state.rollbacks, why), search.state.lr_scale * ROLLBACK_LR_FACTOR
    search.restore(run_dir.load_latest_checkpoint())
    search.state.rollbacks, search.state.lr_scale = rollbacks, lr_scale
    msg = f"{why}: rolled back to epoch {search.state.epoch}, lr x{search.state.lr_scale:g}"
    run_dir.log("WARNING " + msg)
    search.monitor.write(msg)
