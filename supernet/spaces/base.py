"""What every search space shares: the error type, the token-mask helpers of the controller's protocol,
mutation (one decision changed, never into the same network), and the strict JSON reader of users' files."""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np

MUTATION_TRIES = 1000  # draws before a mutation gives up (ours; every cell of every space has a differing neighbour)


class SpaceError(ValueError):
    """An architecture (string, JSON, tokens) that does not belong to the space it is read in."""


class JsonError(ValueError):
    """Text that standard JSON, or a file that says each thing once, cannot be: a duplicate key, NaN, infinity."""


def _unique_keys(pairs: list) -> dict:
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise JsonError(f"key {json.dumps(key)[:60]} appears twice in one object: keep one")
        seen[key] = value
    return seen


def _no_constant(name: str):
    raise JsonError(f"{name} is not a JSON value: write a number")


def loads_strict(text: str | bytes):
    """``json.loads`` for files users give nao-ws: a repeated key (which ``json.loads`` settles silently, last
    wins) and the non-standard NaN / Infinity raise :class:`JsonError`, as malformed JSON raises ValueError."""
    return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)


class Space:
    """The methods every space has in the same form; a space adds ``name``, ``sample``, ``canonical``,
    ``format``, the token protocol and ``change_one`` (one decision drawn and changed)."""

    def canonical_tokens(self, tokens: Sequence[int]) -> tuple[int, ...]:
        return tuple(self.encode(self.canonical(self.decode(tokens))))

    def mutate(self, arch, rng: np.random.Generator):
        """``arch`` with one decision changed (``change_one``), drawn again while the change gives the same
        network (the same canonical form), as regularised evolution's mutation (Real et al. 2019)."""
        parent = self.canonical(self.validate(arch))
        for _ in range(MUTATION_TRIES):
            child = self.change_one(arch, rng)
            if self.canonical(child) != parent:
                return child
        raise SpaceError(f"{self.name}: no mutation of {self.format(arch)} gives another network")

    def fair_batch(self, rng: np.random.Generator) -> list:
        """``len(self.ops)`` architectures in which every decision with that many choices takes each value once
        (a random permutation per decision) and every other decision is drawn uniformly: FairNAS's strict
        fairness (Chu et al. 2021), every op of every edge trained once per step."""
        m, sizes = len(self.ops), self.decision_sizes()
        columns = [rng.permutation(m) if size == m else rng.integers(0, size, m) for size in sizes]
        return [self.from_list([int(c[i]) for c in columns]) for i in range(m)]

    def neighbours(self, arch) -> list:
        """Every architecture one decision away (each value of ``to_list`` set to each other of its
        ``decision_sizes``), one per canonical class other than ``arch``'s, in decision order: the
        neighbourhood of local search (White et al. 2020)."""
        values = self.validate(arch).to_list()
        seen, out = {self.canonical(arch)}, []
        for k, size in enumerate(self.decision_sizes()):
            for v in range(size):
                if v != values[k]:
                    child = self.from_list(values[:k] + [v] + values[k + 1:])
                    key = self.canonical(child)
                    if key not in seen:
                        seen.add(key)
                        out.append(child)
        return out


class NoBranchSymmetry:
    """Token protocol of spaces without branch symmetry (rnn: reference §1.3; nb201: one op per edge)."""

    def augment_tokens(self, tokens: Sequence[int], rng: np.random.Generator) -> list[int]:
        """Augmentation is the identity."""
        return list(tokens)


def changed(value: int, choices: int, rng: np.random.Generator) -> int:
    """One of the ``choices`` values other than ``value``, uniformly."""
    return (value + int(rng.integers(1, choices))) % choices


def named_choice(value, names: tuple[str, ...], noun: str, where: str) -> int:
    """The id of ``value``: one of ``names`` (the JSON form names ops and activations), or the id itself."""
    if isinstance(value, str):
        if value not in names:
            raise SpaceError(f"{where}: unknown {noun} '{value}'; known: {', '.join(names)}")
        return names.index(value)
    return json_int(value, f"{where} {noun}")


def json_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpaceError(f"JSON {what} must be an integer, got {json.dumps(v)}")
    return v


def static_transition_mask(position_mask: np.ndarray, vocab: int) -> np.ndarray:
    return read_only(np.repeat(position_mask[:, None, :], vocab, axis=1))


def read_only(a: np.ndarray) -> np.ndarray:
    """Masks are computed once per space object and shared: nobody may change them."""
    a.setflags(write=False)
    return a


def check_token_seq(space, tokens) -> list[int]:
    tokens = [int(t) for t in tokens]
    if len(tokens) != space.length:
        raise SpaceError(f"{space.name}: token sequence has length {len(tokens)}; expected {space.length}")
    return tokens


def check_tokens_allowed(space, tokens: list[int]) -> None:
    mask = space.transition_mask
    prev = 0
    for pos, t in enumerate(tokens):
        if not 0 <= t < space.vocab_size or not mask[pos, prev, t]:
            raise SpaceError(f"{space.name}: token {t} is not valid at position {pos}")
        prev = t
