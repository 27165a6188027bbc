"""Search strategies: given the scored architectures, propose the next ones. One small interface
(:class:`Strategy`) and a module per strategy: ``random``, ``rea`` (regularised evolution), ``local`` (local
search), ``nao`` (the NAO controller), ``enas`` (ENAS's controller). The search driver
(``nao_ws.search.driver``) runs any of them on any score source.

A strategy sees the history as ``(architecture, score)`` pairs, oldest first (on a supernet, whose scores age,
the current pool, just scored), and returns new proposals: none of them is in ``known``, the set of canonical
texts of every architecture proposed so far, and each it returns is added there, so no query is spent twice.
This package and its options are free of torch; ``make_strategy`` imports the strategy it builds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ...errors import NaoWsError


def canonical_text(space, arch) -> str:
    """The canonical form's text: the identity of an architecture in every file and known-set."""
    return space.format(space.canonical(arch))


def unique_random(space, n: int, known: set, rng: np.random.Generator, max_tries: int = 100_000) -> list:
    """Up to ``n`` random architectures whose canonical forms are not in ``known`` (which is updated)."""
    out = []
    for _ in range(max_tries):
        if len(out) == n:
            break
        a = space.sample(rng)
        key = canonical_text(space, a)
        if key not in known:
            known.add(key)
            out.append(a)
    return out


@dataclass(frozen=True)
class Proposal:
    """An architecture to score, who proposed it and how (e.g. the controller's prediction and step size)."""

    arch: object
    origin: str  # the strategy's name, or random
    info: dict = field(default_factory=dict)


class Strategy:
    """Proposes architectures; keeps its state in checkpoints. ``metrics`` holds what its last ``propose``
    measured, as groups of scalars (``{"controller": {...}}``) for metrics.jsonl and TensorBoard."""

    name: str
    per_round = 10  # proposals a round asks for when the score source leaves it to the strategy (a table)

    def __init__(self, space):
        self.space = space
        self.metrics: dict = {}

    def batch(self, scored: int) -> int:
        """How many to propose per round after ``scored`` architectures, where the source lets the strategy say."""
        return self.per_round

    def propose(self, history: Sequence[tuple], n: int, known: set, rng: np.random.Generator) -> list[Proposal]:
        raise NotImplementedError

    def sampler(self, rng: np.random.Generator) -> Callable[[], object] | None:
        """On a supernet with ``--sampling policy``: the architecture of each training minibatch, drawn by the
        strategy (ENAS trains the shared weights on its policy's samples); None: the strategy draws none."""
        return None

    def learn(self, reward: Callable[[list], list], rng: np.random.Generator) -> dict:
        """On a supernet, after each epoch: learn from ``reward(archs)`` (one float per architecture, from a
        validation minibatch; ENAS's policy training); the figures to log, as groups of scalars."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def make_strategy(cfg, space, source, monitor) -> Strategy:
    """The strategy ``cfg.strategy`` names, with its options from ``cfg``, for the score source ``source``."""
    if cfg.strategy == "random":
        from .random import RandomStrategy

        return RandomStrategy(space)
    if cfg.strategy == "rea":
        from .rea import ReaStrategy

        return ReaStrategy(space, cfg.population, cfg.tournament)
    if cfg.strategy == "nao":
        from .nao import NaoStrategy

        return NaoStrategy.from_config(cfg, space, source.device, monitor)
    if cfg.strategy == "enas":
        from .enas import EnasStrategy

        return EnasStrategy.from_config(cfg, space, source)
    if cfg.strategy == "local":
        from .local import LocalSearch

        return LocalSearch(space)
    raise NaoWsError(f"--strategy {cfg.strategy} is unknown")
