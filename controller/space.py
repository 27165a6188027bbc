"""The token protocol through which the controller sees a search space, without importing ``supernet``."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class TokenSpace(Protocol):
    """What the NAO controller needs to know about a search space.

    Tokens are integers in ``1..vocab_size-1``; 0 is the decoder's start token and never appears in a
    sequence. ``transition_mask[t, prev, tok]`` says whether ``tok`` may stand at position ``t`` when the
    token before it is ``prev`` (``prev = 0`` at position 0). A first-order mask covers every space here:
    the 11-op CNN space's op size depends on the op type just before it.
    """

    name: str
    vocab_size: int
    length: int

    @property
    def transition_mask(self) -> np.ndarray:  # bool [length, vocab_size, vocab_size]
        ...

    def augment_tokens(self, tokens: Sequence[int], rng: np.random.Generator) -> list[int]:
        """A symmetric variant of the sequence with the same meaning (branch swap; identity if none)."""
        ...

    def canonical_tokens(self, tokens: Sequence[int]) -> tuple[int, ...]:
        """One representative per equivalence class: equal for two encodings of the same network."""
        ...


class ControllerInputError(ValueError):
    """Input the caller can fix: sequences of the wrong length, tokens invalid at their position, NaN targets,
    more seeds requested than architectures given."""
