"""A weight-sharing supernet as the score source (paper 3.4, reference §3): it trains between rounds, one sampled
architecture per minibatch, and scores architectures with inherited weights on fixed dev data.

    round: supernet training (``eval_every`` epochs) -> scoring of the whole pool -> the strategy proposes

Its scores age as the supernet trains, so every round scores the pool again (``stale``). Which architecture
trains on a minibatch (``--sampling``): uniform over the pool (reference §3.1), in proportion to its parameter
count, uniform over the whole space, or drawn by the strategy's policy (ENAS). At the end the top ``rerank_top`` are re-ranked by short standalone
training. The supernet, its optimiser and data live in ``supernets`` (one class per space).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from supernet.spaces import get_space

from ...data.tasks import IMAGE_TASKS, TEXT_TASKS
from ...errors import NaoWsError
from ...runs import check_device
from . import ScoreSource
from .supernets import make_supernet

def check_config(cfg) -> None:
    """Impossible option combinations, as one-line errors (each value's own range is checked when read)."""
    if cfg.task not in IMAGE_TASKS + TEXT_TASKS:
        raise NaoWsError(f"--task {cfg.task} has only NAS-Bench-201's table here: search it with --space nb201 "
                         "--benchmark FILE")
    image = cfg.task in IMAGE_TASKS
    if (image and cfg.space not in ("cnn-ws", "nb201")) or (not image and cfg.space != "rnn"):
        want = "cnn-ws or nb201 (or cnn for the standalone search)" if image else "rnn"
        raise NaoWsError(f"--task {cfg.task} searches the {want} space, not --space {cfg.space}")
    if cfg.sampling == "policy" and cfg.strategy != "enas":
        raise NaoWsError(f"--sampling policy draws the supernet's architectures from ENAS's policy: use it with "
                         f"--strategy enas, not {cfg.strategy}")
    if cfg.sampling == "fair" and cfg.space == "rnn":
        raise NaoWsError("--sampling fair trains the image supernets (cnn-ws, nb201): use another for rnn")
    split = getattr(cfg, "few_shot_decision", -1)
    if split >= 0:
        decisions = len(get_space(cfg.space).decision_sizes())
        if split >= decisions:
            raise NaoWsError(f"--few-shot-decision {split}: a {cfg.space} architecture has decisions 0..{decisions - 1}")
        if not cfg.few_shot_epoch < cfg.epochs:
            raise NaoWsError(f"--few-shot-epoch {cfg.few_shot_epoch} must lie below --epochs {cfg.epochs}")
        if cfg.sampling == "fair":
            raise NaoWsError("--sampling fair trains one supernet on every op at once: drop --few-shot-decision")
    if cfg.sampling == "balanced" and cfg.space == "rnn":
        raise NaoWsError("--sampling balanced weighs architectures by parameter count, which every rnn cell "
                         "shares: use --sampling uniform")
    if cfg.pool_size < 2:
        raise NaoWsError("--pool-size must be >= 2: a strategy learns from the pool")
    if cfg.strategy == "nao" and cfg.seeds > cfg.pool_size:
        raise NaoWsError(f"--seeds {cfg.seeds} exceeds --pool-size {cfg.pool_size}: the seeds come from the pool")
    if cfg.new_per_iter + cfg.random_per_iter > cfg.pool_size:
        raise NaoWsError(f"--new-per-iter + --random-per-iter ({cfg.new_per_iter + cfg.random_per_iter}) "
                         f"exceed --pool-size {cfg.pool_size}")
    if cfg.eval_every > cfg.epochs:
        raise NaoWsError(f"--eval-every {cfg.eval_every} must be between 1 and --epochs {cfg.epochs}")
    if cfg.rerank_top > cfg.pool_size:
        raise NaoWsError(f"--rerank-top {cfg.rerank_top} exceeds --pool-size {cfg.pool_size}")
    if getattr(cfg, "cuda_graph", False) and cfg.deterministic:
        raise NaoWsError("--cuda-graph is not supported with --deterministic (the capture is written for the "
                         "default CUDA kernels): drop one of them")
    check_device(cfg)
    for name in ("channels", "rerank_channels") if cfg.space == "cnn-ws" else ():
        if getattr(cfg, name) % 2:
            raise NaoWsError(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be even (factorized reduce halves it)")
    if getattr(cfg, "lr_min", 0) > cfg.lr:
        raise NaoWsError(f"--lr-min {cfg.lr_min} exceeds --lr {cfg.lr}: the schedule runs from --lr down to it")


def check_data(cfg) -> None:
    """What the data is too small for, before the run folder exists: on PTB, the batch and the scoring windows
    (reading the corpus takes a second; images have no such limit)."""
    if cfg.space == "rnn":
        from ...data.text import check_sizes, load_corpus

        check_sizes(load_corpus(cfg.task, cfg.data_dir), cfg.batch_size, cfg.bptt)


class SupernetSource(ScoreSource):
    """The supernet of ``cfg.space``, its schedule (round r trains up to epoch (r+1) x ``eval_every``), its
    sampler of training architectures and the learning-rate scale that a divergence lowers."""

    stale = True

    def __init__(self, cfg):
        self.cfg, self.space = cfg, get_space(cfg.space)
        self.device = check_device(cfg)
        self.supernet = make_supernet(cfg, self.device)
        self.initial, self.refill, self.total = cfg.pool_size, cfg.random_per_iter, cfg.epochs
        self.epoch, self.lr_scale = 0, 1.0
        self.sizes: dict = {}  # text -> parameter count, for --sampling balanced
        self.proxy_values: dict = {}  # text -> its --score-proxy value

    def round_size(self, strategy, scored: int) -> int:
        return self.cfg.new_per_iter

    def finished(self, rounds: int, scored: int) -> bool:
        return self.epoch >= self.cfg.epochs

    def step(self, scored: int) -> int:
        return self.epoch

    def position(self) -> str:
        return f"epoch {self.epoch}"

    def advance(self, round_: int, pool: Sequence, rng: np.random.Generator, monitor,
                pick=None) -> tuple[dict, bool] | None:
        """One supernet epoch, until round ``round_``'s last: epoch (round + 1) x ``eval_every``, or the last;
        a checkpoint every ``checkpoint_every`` epochs and after the round's last."""
        last = min((round_ + 1) * self.cfg.eval_every, self.cfg.epochs)
        if self.epoch >= last:
            return None
        metrics = self.supernet.train_epoch(self.epoch, pick or self.sampler(pool, rng), self.lr_scale, monitor)
        self.epoch += 1
        return {"epoch": self.epoch, **metrics}, self.epoch == last or self.epoch % self.cfg.checkpoint_every == 0

    def sampler(self, pool: Sequence, rng: np.random.Generator):
        """The architecture of each minibatch (``--sampling``)."""
        if self.cfg.sampling == "balanced":  # ~ parameter count (ref-PT's later child_sample_policy "params")
            sizes = np.array([self.sizes.setdefault(self.space.format(a), self.supernet.arch_size(a)) for a in pool],
                             float)
            p = sizes / sizes.sum()
            return lambda: pool[int(rng.choice(len(pool), p=p))]
        if self.cfg.sampling == "space":  # Li & Talwalkar 2019's random search with weight sharing
            return lambda: self.space.sample(rng)
        if self.cfg.sampling == "fair":
            return lambda: self.space.fair_batch(rng)
        return lambda: pool[int(rng.integers(len(pool)))]  # uniform over the pool (reference §3.1)

    def reward(self, archs: Sequence, rng: np.random.Generator) -> list[float]:
        return self.supernet.reward(archs, rng)

    def score(self, archs: Sequence, monitor):
        """The whole list in one chunk: one write and one fsync of its records."""
        records = self.supernet.score(archs, monitor)
        if getattr(self.cfg, "score_proxy", "") and records:
            records = self.ranked_with_proxy(archs, records, monitor)
        yield [(i, {**r, "epoch": self.epoch}) for i, r in enumerate(records)]

    def ranked_with_proxy(self, archs: Sequence, records: list[dict], monitor) -> list[dict]:
        """``--score-proxy``: each score becomes the mean of the architecture's rankings by inherited weights
        and by the proxy among ``archs``, over their number (1: first by both). A cell's proxy value is computed
        once (its network and minibatch are fixed by the search's seed) and kept in the checkpoint."""
        from .. import proxies

        name, texts = self.cfg.score_proxy, [self.space.format(a) for a in archs]
        todo = {t: a for t, a in zip(texts, archs) if t not in self.proxy_values}
        if todo:
            x, y = proxies.minibatch(self.supernet.data, self.cfg.proxy_batch, self.cfg.seed, self.device)
            with monitor.bar(total=len(todo), desc=name) as bar:
                for text, arch in todo.items():
                    self.proxy_values[text] = proxies.score(arch, [name], x, y, self.supernet.data.num_classes,
                                                            self.cfg.seed)[name]
                    bar.update(1)
        proxy = [self.proxy_values[t] for t in texts]
        mixed = proxies.mean_rank([r["score"] for r in records], proxy) / len(records)
        return [{**r, "score": float(m), "inherited_score": r["score"], name: v if np.isfinite(v) else None}
                for r, m, v in zip(records, mixed, proxy)]

    def finalists(self) -> int:
        return self.cfg.rerank_top

    def rerank(self, arch, monitor) -> dict:
        return self.supernet.rerank(arch, self.cfg.seed, monitor)

    def lower_lr(self, factor: float) -> None:
        self.lr_scale *= factor

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "lr_scale": self.lr_scale, "supernet": self.supernet.state_dict(),
                "proxy_values": dict(self.proxy_values)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.lr_scale = state["epoch"], state["lr_scale"]
        self.proxy_values = dict(state.get("proxy_values", {}))
        self.supernet.load_state_dict(state["supernet"])
