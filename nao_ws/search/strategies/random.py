"""Random search: uniform architectures, each of a canonical class not seen before."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import Proposal, Strategy, unique_random


class RandomStrategy(Strategy):
    name = "random"

    def propose(self, history: Sequence[tuple], n: int, known: set, rng: np.random.Generator) -> list[Proposal]:
        return [Proposal(a, "random") for a in unique_random(self.space, n, known, rng)]
