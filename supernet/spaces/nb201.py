"""NAS-Bench-201's cell space (reference §8): every one of its 15,625 cells has a trained accuracy in the
benchmark's table."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np

from .base import (NoBranchSymmetry, Space, SpaceError, changed, check_token_seq, check_tokens_allowed, read_only,
                   static_transition_mask)

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")  # reference §8, the benchmark's order
NB201_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (source, target) in the text form's order (reference §8)
_NB201_CELL = re.compile(r"\|([a-z0-9_]+)~([0-9])")  # `~i`: one ASCII digit names the source node


@dataclass(frozen=True)
class Nb201Arch:
    """One NAS-Bench-201 cell: the op of each of the 6 edges, in ``NB201_EDGES`` order (reference §8)."""

    space: str
    ops: tuple  # 6 op ids into NB201_OPS

    def to_list(self) -> list[int]:
        return list(self.ops)


def _nb201_function(ops: Sequence[int]) -> tuple:
    """What the cell computes, as a sorted tuple of terms summed at node 3 (empty = the zero map).

    A term is ``"x"`` (the cell input) or ``(op, terms)``, an op applied to a node's sum. ``none`` and any op
    of a zero node give nothing, ``skip_connect`` passes its node's terms on, and sums flatten; so cells that
    differ only in node numbering (isomorphic) or in edges that cannot reach the output compute the same
    tuple. An op of a zero map counts as zero, as in the benchmark's own ``to_unique_str(consider_zero=True)``
    (a trained conv-BN of zeros outputs BN's constant bias; pooling and skip give exact zeros).
    """
    nodes = [("x",)]
    for j in (1, 2, 3):
        terms = []
        for (src, dst), op in zip(NB201_EDGES, ops):
            if dst != j or NB201_OPS[op] == "none" or not nodes[src]:
                continue
            if NB201_OPS[op] == "skip_connect":
                terms.extend(nodes[src])
            else:
                terms.append((NB201_OPS[op], nodes[src]))
        nodes.append(tuple(sorted(terms, key=repr)))
    return nodes[3]


class Nb201Space(NoBranchSymmetry, Space):
    """NAS-Bench-201's cell space (reference §8): 6 edges of a 4-node DAG, 5 ops each, 5^6 = 15,625 cells.

    Text form: the benchmark's own string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``; the 6
    integers of the op ids (in edge order) are read too. Tokens: op o -> o+1 (1..5), 0 = start; 6 tokens,
    vocabulary 6, every op valid at every position. The canonical form of a cell is the lowest-ordinal cell
    (``_ordinal``) computing the same
    function (``_nb201_function``): 4,930 classes. The authors publish 6,466 "unique" cells, counted with
    their ``to_unique_str``, whose strings keep zero terms and nesting that do not change the function (a
    skip into a sum, ``none`` edges beside a real one); each of their classes lies inside one of ours (tested).
    """

    name = "nb201"
    ops = NB201_OPS
    edges = NB201_EDGES
    num_edges = len(NB201_EDGES)
    vocab_size = len(NB201_OPS) + 1
    length = len(NB201_EDGES)
    op_offset = 1

    def make(self, ops: Iterable[int]) -> Nb201Arch:
        return self.validate(Nb201Arch(self.name, tuple(int(o) for o in ops)))

    def validate(self, arch) -> Nb201Arch:
        if not isinstance(arch, Nb201Arch) or arch.space != self.name:
            got = getattr(arch, "space", type(arch).__name__)
            raise SpaceError(f"expected an nb201 architecture, got {got}")
        if len(arch.ops) != self.num_edges:
            raise SpaceError(f"nb201: got {len(arch.ops)} edge ops; expected {self.num_edges}")
        for (src, dst), op in zip(self.edges, arch.ops):
            if not 0 <= op < len(self.ops):
                raise SpaceError(f"nb201: edge {src}->{dst} op {op} is out of range; allowed 0..{len(self.ops) - 1} "
                                 f"({', '.join(self.ops)})")
        return arch

    def sample(self, rng: np.random.Generator) -> Nb201Arch:
        """Uniform over the 15,625 cells (each edge's op drawn independently and uniformly)."""
        return Nb201Arch(self.name, tuple(int(o) for o in rng.integers(0, len(self.ops), size=self.num_edges)))

    def change_one(self, arch: Nb201Arch, rng: np.random.Generator) -> Nb201Arch:
        """One edge drawn uniformly and given another op."""
        ops = list(self.validate(arch).ops)
        edge = int(rng.integers(self.num_edges))
        ops[edge] = changed(ops[edge], len(self.ops), rng)
        return Nb201Arch(self.name, tuple(ops))

    def decision_sizes(self) -> list[int]:
        """Choices of each value of the integer form: an op per edge."""
        return [len(self.ops)] * self.num_edges

    # -- text and JSON ------------------------------------------------------------------------------------
    def from_list(self, values: Sequence[int]) -> Nb201Arch:
        if len(values) != self.num_edges:
            raise SpaceError(f"nb201: got {len(values)} integers; expected {self.num_edges} op ids, one per edge "
                             "(1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2), or the benchmark's |op~i|+... string")
        return self.make(values)

    def parse(self, text: str) -> Nb201Arch:
        """The benchmark's string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` exactly, without spaces (reference §7)."""
        parts = text.split("+")
        if len(parts) != 3:
            raise SpaceError(f"nb201: '{text}' is not a NAS-Bench-201 cell string: expected 3 nodes "
                             "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'")
        ops = []
        for j, part in enumerate(parts, start=1):
            found = _NB201_CELL.findall(part)
            if not part.startswith("|") or not part.endswith("|") or "|".join(f"{o}~{s}" for o, s in found) != part[1:-1]:
                raise SpaceError(f"nb201: node {j} '{part}' must read '|op~i|...|'")
            if [int(s) for _, s in found] != list(range(j)):
                raise SpaceError(f"nb201: node {j} '{part}' must have one edge from each of nodes 0..{j - 1}, in order")
            for op, _ in found:
                if op not in self.ops:
                    raise SpaceError(f"nb201: unknown op '{op}' in node {j}; known: {', '.join(self.ops)}")
                ops.append(self.ops.index(op))
        return self.make(ops)

    def format(self, arch: Nb201Arch) -> str:
        self.validate(arch)
        nodes = ["|" + "|".join(f"{self.ops[op]}~{src}" for (src, dst), op in zip(self.edges, arch.ops) if dst == j)
                 + "|" for j in (1, 2, 3)]
        return "+".join(nodes)

    def to_json(self, arch: Nb201Arch) -> dict:
        return {"space": self.name, "cell": self.format(arch)}

    def from_json(self, obj: dict) -> Nb201Arch:
        cell = obj.get("cell")
        if not isinstance(cell, str):
            raise SpaceError("nb201: JSON architecture needs 'cell', the benchmark's '|op~0|+...' string")
        return self.parse(cell)

    def op_name(self, op: int) -> str:
        return self.ops[op]

    # -- structure and canonical form ---------------------------------------------------------------------
    def _ordinal(self, arch: Nb201Arch) -> int:
        """The cell's number when the ops are read as base-5 digits, edge 1<-0 the lowest (not the benchmark's
        own index, whose order is its file's)."""
        return sum(op * len(self.ops) ** k for k, op in enumerate(self.validate(arch).ops))

    def _from_ordinal(self, ordinal: int) -> tuple:
        n = len(self.ops)
        return tuple(ordinal // n ** k % n for k in range(self.num_edges))

    @cached_property
    def _representatives(self) -> tuple:
        """Each cell's (by ordinal) canonical op tuple: the lowest-ordinal cell computing the same function."""
        rep: dict[tuple, tuple] = {}
        return tuple(rep.setdefault(_nb201_function(ops), ops)
                     for ops in map(self._from_ordinal, range(len(self.ops) ** self.num_edges)))

    def canonical(self, arch: Nb201Arch) -> Nb201Arch:
        return Nb201Arch(self.name, self._representatives[self._ordinal(arch)])

    def num_classes(self) -> int:
        """Distinct functions among the 15,625 cells: 4,930."""
        return len(set(self._representatives))

    def all_cells(self) -> list[Nb201Arch]:
        """The 15,625 cells, by ordinal."""
        return [Nb201Arch(self.name, self._from_ordinal(i)) for i in range(len(self.ops) ** self.num_edges)]

    def reaches_output(self, arch: Nb201Arch) -> bool:
        """Whether any path of non-``none`` edges joins the input to the output."""
        return bool(_nb201_function(self.validate(arch).ops))

    # -- the controller's token protocol --------------------------------------------------------------------
    def encode(self, arch: Nb201Arch) -> list[int]:
        return [op + self.op_offset for op in self.validate(arch).ops]

    def decode(self, tokens: Sequence[int]) -> Nb201Arch:
        tokens = check_token_seq(self, tokens)
        check_tokens_allowed(self, tokens)
        return self.make(t - self.op_offset for t in tokens)

    @cached_property
    def transition_mask(self) -> np.ndarray:
        mask = np.zeros((self.length, self.vocab_size), dtype=bool)
        mask[:, self.op_offset:] = True
        return static_transition_mask(mask, self.vocab_size)

    @cached_property
    def index_positions(self) -> np.ndarray:
        """Token positions that choose an input: none, every token is an edge's op."""
        return read_only(np.zeros(self.length, dtype=bool))

    def size(self) -> float:
        return float(len(self.ops) ** self.num_edges)
