"""Score sources: give architectures scores, higher is better. One small interface (:class:`ScoreSource`) and a
module per source: ``supernet`` (inherited weights of a weight-sharing supernet that trains between rounds:
cnn-ws, nb201, rnn), ``table`` (a tabular benchmark's validation column), ``proxy`` (a zero-cost proxy of the
untrained network), ``standalone`` (every candidate trained from scratch, on this machine or a Ray cluster). The search driver runs any strategy on any of them.

This package and its options are free of torch; ``make_source`` imports the source it builds.
"""
from __future__ import annotations

from typing import Iterator, Sequence


class ScoreSource:
    """What the driver needs from a score source. A round: ``advance`` until it returns None (between-round
    work, e.g. supernet epochs, one record each), ``score`` the round's architectures, then, unless
    ``finished``, the strategy proposes ``round_size`` new ones (and ``refill`` random ones)."""

    stale = False  # scores age (the supernet trains on): each round scores the whole pool again
    refill = 0  # random architectures each round adds on top of the strategy's proposals
    initial: int  # random architectures of round 0
    total: int  # the step (``step``) at which the search ends, for the progress bar
    device: object  # where this process computes (the strategy's controller too)
    reward_scale = 1.0  # a score times this is a reward in ENAS's units (an accuracy as a fraction)

    def round_size(self, strategy, scored: int) -> int:
        """How many new architectures the next round asks the strategy for, after ``scored`` queries."""
        raise NotImplementedError

    def finished(self, rounds: int, scored: int) -> bool:
        """Whether the search ends after ``rounds`` scored rounds and ``scored`` queries."""
        raise NotImplementedError

    def step(self, scored: int) -> int:
        """The TensorBoard step of what happens now: supernet epochs, queries or trained candidates."""
        return scored

    def advance(self, round_: int, pool: Sequence, rng, monitor, pick=None) -> tuple[dict, bool] | None:
        """One unit of round ``round_``'s work before its scoring (``pool``: what it will score): its metrics
        record and whether to checkpoint now; None once the round may be scored. ``pick``: the strategy's
        sampler of training architectures, where it draws them (``Strategy.sampler``)."""
        return None

    def reward(self, archs: Sequence, rng) -> list[float]:
        """ENAS's reward of each architecture from one validation minibatch (only a source that trains between
        rounds has one: the strategy learns from it after each unit of ``advance``)."""
        raise NotImplementedError

    def score(self, archs: Sequence, monitor) -> Iterator[list[tuple[int, dict]]]:
        """Results as they come, in chunks of ``(index in archs, {"score": ..., other metrics})``; a failed
        architecture's result is ``{"score": None, "failed": reason}``."""
        raise NotImplementedError

    def finalists(self) -> int:
        """How many of the best architectures the end of the search scores again with ``rerank``."""
        return 0

    def rerank(self, arch, monitor) -> dict:
        raise NotImplementedError

    def summary(self, best: dict, queries: Sequence[dict]) -> tuple[dict, dict]:
        """(fields best.json adds for ``best``, curves for the final TensorBoard run {tag: [(step, value)]});
        ``queries`` are the successful query records, in order."""
        return {}, {}

    def position(self) -> str:
        return ""

    def lower_lr(self, factor: float) -> None:
        """After a divergence (only a source that trains can diverge)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def close(self) -> None:
        pass


def kind_of(space: str, benchmark, proxy=None) -> str:
    """Which source a search uses: the table with ``--benchmark``, a zero-cost proxy with ``--proxy``,
    standalone training for the 11-op space, else the weight-sharing supernet."""
    if benchmark:
        return "table"
    if proxy:
        return "proxy"
    return "standalone" if space == "cnn" else "supernet"


def source_kind(cfg) -> str:
    """``kind_of`` a resolved search config."""
    return kind_of(cfg.space, getattr(cfg, "benchmark", None), getattr(cfg, "proxy", None))


def make_source(cfg, **kwargs) -> ScoreSource:
    """The source of ``cfg`` (``kind_of``); ``kwargs`` go to its constructor."""
    kind = source_kind(cfg)
    if kind == "table":
        from .table import TableSource as cls
    elif kind == "proxy":
        from .proxy import ProxySource as cls
    elif kind == "standalone":
        from .standalone import StandaloneSource as cls
    else:
        from .supernet import SupernetSource as cls
    return cls(cfg, **kwargs)
