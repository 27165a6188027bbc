"""Regularised evolution (Real et al. 2019): random architectures until the population is full; then each
proposal mutates (``space.mutate``: one decision changed) the best of ``tournament`` drawn from the
``population`` most recent architectures, and the oldest leave the population (aging). On a supernet, whose
pool keeps its best and adds the newest, the population is the pool's last ``population``: evolution on
inherited weights, as single-path one-shot search runs it."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import NaoWsError
from . import Proposal, Strategy, canonical_text, unique_random

TRIES = 100  # mutations of a parent before a random architecture stands in (all its neighbours seen: rare)


class ReaStrategy(Strategy):
    name = "rea"
    per_round = 1  # one child at a time: every tournament sees the previous child's score

    def __init__(self, space, population: int, tournament: int):
        if not 1 <= tournament <= population:
            raise NaoWsError(f"--tournament {tournament} must lie between 1 and --population {population}")
        super().__init__(space)
        self.population, self.tournament = population, tournament

    def propose(self, history: Sequence[tuple], n: int, known: set, rng: np.random.Generator) -> list[Proposal]:
        if len(history) < self.population:
            return [Proposal(a, "random") for a in unique_random(self.space, min(n, self.population - len(history)),
                                                                   known, rng)]
        alive = history[-self.population:]
        children = (self._child(alive, known, rng) for _ in range(n))
        return [c for c in children if c is not None]

    def _child(self, alive: Sequence[tuple], known: set, rng: np.random.Generator) -> Proposal | None:
        picked = rng.choice(len(alive), size=self.tournament, replace=False)
        parent = max((alive[i] for i in picked), key=lambda rec: rec[1])[0]
        for _ in range(TRIES):
            child = self.space.mutate(parent, rng)
            key = canonical_text(self.space, child)
            if key not in known:
                known.add(key)
                return Proposal(child, "rea", {"parent": self.space.format(parent)})
        stand_in = unique_random(self.space, 1, known, rng)
        return Proposal(stand_in[0], "random") if stand_in else None
