"""Local search (White et al. 2020, "Local search is state of the art for neural architecture search
benchmarks"): from a centre, query every architecture one decision away (``space.neighbours``), in random
order; move to the best neighbour if it beats the centre, else the centre is a local optimum and the search
restarts from a random architecture. The first centre is the best of the search's initial random ones.

On a supernet, whose scores age, the comparison uses the pool's current scores; a neighbour that left the
pool counts as unscored.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from supernet.spaces import parse_arch

from . import Proposal, Strategy, canonical_text, unique_random


class LocalSearch(Strategy):
    name = "local"
    per_round = 1  # one query at a time on a table: a neighbourhood's end is seen the moment it comes

    def __init__(self, space):
        super().__init__(space)
        self.centre: str | None = None  # text of the architecture whose neighbourhood is being queried
        self.queue: list[str] = []  # its neighbours still to query, the next last
        self.moves = self.restarts = 0

    def propose(self, history: Sequence[tuple], n: int, known: set, rng: np.random.Generator) -> list[Proposal]:
        scores = {canonical_text(self.space, a): s for a, s in history}
        out: list[Proposal] = []
        while len(out) < n:
            while self.queue and len(out) < n:
                arch = parse_arch(self.queue.pop(), self.space.name)
                key = canonical_text(self.space, arch)
                if key not in known:
                    known.add(key)
                    out.append(Proposal(arch, "local", {"centre": self.centre}))
            if out or not self._next_centre(history, scores, known, rng, out):
                break  # a neighbourhood's scores come before the next decision
        self.metrics = {"local": {"moves": self.moves, "restarts": self.restarts}}
        return out

    def _next_centre(self, history, scores: dict, known: set, rng, out: list) -> bool:
        """Move to the best scored neighbour of the centre if it beats it, else restart at a random architecture
        (proposed in ``out``); queue the new centre's neighbours. False when no architecture is left."""
        if self.centre is None:
            if not history:
                return False
            self.centre = self.space.format(max(history, key=lambda rec: rec[1])[0])
        else:
            centre = parse_arch(self.centre, self.space.name)
            rated = [(scores[k], a) for a in self.space.neighbours(centre)
                     if (k := canonical_text(self.space, a)) in scores]
            best = max(rated, key=lambda r: r[0], default=None)
            if best is not None and best[0] > scores.get(canonical_text(self.space, centre), -np.inf):
                self.centre, self.moves = self.space.format(best[1]), self.moves + 1
            else:  # a local optimum
                fresh = unique_random(self.space, 1, known, rng)
                if not fresh:
                    return False
                out.append(Proposal(fresh[0], "local", {"restart": True}))
                self.centre, self.restarts = self.space.format(fresh[0]), self.restarts + 1
        neighbours = self.space.neighbours(parse_arch(self.centre, self.space.name))
        self.queue = [self.space.format(neighbours[i]) for i in rng.permutation(len(neighbours))]
        return True

    def state_dict(self) -> dict:
        return {"centre": self.centre, "queue": list(self.queue), "moves": self.moves, "restarts": self.restarts}

    def load_state_dict(self, state: dict) -> None:
        self.centre, self.queue = state["centre"], list(state["queue"])
        self.moves, self.restarts = state["moves"], state["restarts"]
