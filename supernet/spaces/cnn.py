"""The two convolutional cell spaces (reference §1.1, §1.2): ``cnn-ws``, ENAS's 5-op space of the
weight-sharing search, and ``cnn``, the 11-op space of the standalone search (paper Algorithm 1).

Canonical forms go beyond the branch swap of reference §1.1: two encodings are the same network when one is a
renumbering of the other's nodes (any topological order) and/or has a node's two branches swapped. The
canonical form is the lexicographically smallest such encoding, so isomorphic cells never fill the pool
twice (reference §6).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Iterable, Sequence

import numpy as np

from .base import (Space, SpaceError, changed, check_token_seq, check_tokens_allowed, json_int, named_choice,
                   read_only, static_transition_mask)

NUM_NODES = 5  # B = 5 nodes per cell (reference §1.1, §1.2)
CELL_INPUTS = 2  # the outputs of the previous two cells: indices 0 and 1 (reference §1.1)

CNN_WS_OPS = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity")  # reference §1.1 order
CNN_OPS = (  # reference §1.2 order; ref-PT prints these ids + 5 (reference §7)
    "identity", "conv_1x1", "conv_3x3", "conv_1x3_3x1", "conv_1x7_7x1",
    "max_pool_2x2", "max_pool_3x3", "max_pool_5x5", "avg_pool_2x2", "avg_pool_3x3", "avg_pool_5x5",
)
# The 11-op space is tokenised as (input index, op type, op size) per branch (paper 3.1, "totally 60 tokens").
CNN_OP_TYPES = ("identity", "conv", "conv_fact", "max_pool", "avg_pool")
CNN_OP_SIZES = (1, 2, 3, 5, 7)
CNN_OP_TYPE_SIZE = (  # op id -> (type index, size index); conv_fact = 1xk followed by kx1
    (0, 0), (1, 0), (1, 2), (2, 2), (2, 4), (3, 1), (3, 2), (3, 3), (4, 1), (4, 2), (4, 3),
)

Node = tuple  # (in1, op1, in2, op2)
Cell = tuple  # tuple of NUM_NODES nodes


@dataclass(frozen=True)
class CnnArch:
    """A (normal, reduction) cell pair. Each cell is 5 nodes of ``(in1, op1, in2, op2)`` integers.

    Node j (0-based) reads from indices 0..j+1 (0, 1 = cell inputs; 2.. = earlier nodes).
    """

    space: str
    normal: Cell
    reduce: Cell

    def cells(self) -> tuple[Cell, Cell]:
        return (self.normal, self.reduce)

    def to_list(self) -> list[int]:
        return [v for cell in self.cells() for node in cell for v in node]


def _cell_loose_ends(cell: Cell) -> list[int]:
    used = set()
    for in1, _, in2, _ in cell:
        used.update((in1, in2))
    return [i for i in range(CELL_INPUTS + len(cell)) if i not in used]


@lru_cache(maxsize=1 << 16)
def _canonical_cell(cell: Cell) -> Cell:
    """Smallest encoding over all topological renumberings of the nodes and all branch orders."""
    n = len(cell)
    deps = [{i - CELL_INPUTS for i in (node[0], node[2]) if i >= CELL_INPUTS} for node in cell]
    best = None
    for order in itertools.permutations(range(n)):
        pos = {old: new for new, old in enumerate(order)}
        if any(pos[d] >= pos[j] for j in range(n) for d in deps[j]):
            continue  # not a topological order
        remap = lambda i: i if i < CELL_INPUTS else pos[i - CELL_INPUTS] + CELL_INPUTS  # noqa: E731
        enc = []
        for old in order:
            in1, op1, in2, op2 = cell[old]
            b1, b2 = (remap(in1), op1), (remap(in2), op2)
            enc.append(b1 + b2 if b1 <= b2 else b2 + b1)
        enc = tuple(enc)
        if best is None or enc < best:
            best = enc
    return best


class _CnnSpaceBase(Space):
    """Shared logic of the two CNN spaces; subclasses set ``name`` and ``ops`` and the token layout."""

    name: str
    ops: tuple[str, ...]
    num_nodes = NUM_NODES
    text_length = 2 * NUM_NODES * 4  # 40 integers (reference §7)

    # -- construction and validation -------------------------------------------------------------------
    def make(self, normal: Iterable[Sequence[int]], reduce: Iterable[Sequence[int]]) -> CnnArch:
        cells = []
        for cname, cell in (("normal", normal), ("reduce", reduce)):
            cell = tuple(tuple(int(v) for v in node) for node in cell)
            self._validate_cell(cname, cell)
            cells.append(cell)
        return CnnArch(self.name, cells[0], cells[1])

    def _validate_cell(self, cname: str, cell: Cell) -> None:
        if len(cell) != self.num_nodes:
            raise SpaceError(f"{self.name}: the {cname} cell has {len(cell)} nodes; expected {self.num_nodes}")
        for j, node in enumerate(cell):
            if len(node) != 4:
                raise SpaceError(f"{self.name}: {cname} node {j} has {len(node)} values; expected 4 (in1 op1 in2 op2)")
            for b, (inp, op) in enumerate(((node[0], node[1]), (node[2], node[3])), start=1):
                if not 0 <= inp <= j + 1:
                    what = "itself or a later node" if inp >= j + CELL_INPUTS else "an index below 0"
                    raise SpaceError(
                        f"{self.name}: {cname} node {j} (index {j + CELL_INPUTS}) input {b} = {inp} reads {what}; "
                        f"allowed 0..{j + 1}")
                if not 0 <= op < len(self.ops):
                    raise SpaceError(
                        f"{self.name}: {cname} node {j} op {b} = {op} is out of range; allowed 0..{len(self.ops) - 1} "
                        f"({', '.join(self.ops)})")

    def validate(self, arch) -> CnnArch:
        if not isinstance(arch, CnnArch) or arch.space != self.name:
            got = getattr(arch, "space", type(arch).__name__)
            raise SpaceError(f"expected a {self.name} architecture, got {got}")
        for cname, cell in zip(("normal", "reduce"), arch.cells()):
            self._validate_cell(cname, cell)
        return arch

    # -- sampling ------------------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> CnnArch:
        """Uniform over encodings: every input and op drawn independently and uniformly (as ENAS)."""
        cells = []
        for _ in range(2):
            cell = []
            for j in range(self.num_nodes):
                ins = rng.integers(0, j + CELL_INPUTS, size=2)
                ops = rng.integers(0, len(self.ops), size=2)
                cell.append((int(ins[0]), int(ops[0]), int(ins[1]), int(ops[1])))
            cells.append(tuple(cell))
        return CnnArch(self.name, cells[0], cells[1])

    def change_one(self, arch: CnnArch, rng: np.random.Generator) -> CnnArch:
        """One of the 40 decisions (an input or an op of a branch) drawn uniformly and set to another value."""
        values = self.validate(arch).to_list()
        k = int(rng.integers(len(values)))
        node = (k % (self.text_length // 2)) // 4  # node within its cell
        values[k] = changed(values[k], node + CELL_INPUTS if k % 2 == 0 else len(self.ops), rng)
        return self.from_list(values)

    def decision_sizes(self) -> list[int]:
        """Choices of each value of the integer form: a branch's input (node j: j + 2) and its op."""
        return [(k % (self.text_length // 2)) // 4 + CELL_INPUTS if k % 2 == 0 else len(self.ops)
                for k in range(self.text_length)]

    # -- text and JSON forms (reference §7) -----------------------------------------------------------------------
    def from_list(self, values: Sequence[int]) -> CnnArch:
        if len(values) != self.text_length:
            raise SpaceError(f"{self.name}: got {len(values)} integers; expected {self.text_length} "
                             f"(2 cells x {self.num_nodes} nodes x 'in1 op1 in2 op2')")
        half = self.text_length // 2
        cells = [[tuple(values[c * half + 4 * j: c * half + 4 * j + 4]) for j in range(self.num_nodes)] for c in (0, 1)]
        return self.make(cells[0], cells[1])

    def format(self, arch: CnnArch) -> str:
        self.validate(arch)
        return " | ".join(" ".join(str(v) for node in cell for v in node) for cell in arch.cells())

    def to_json(self, arch: CnnArch) -> dict:
        self.validate(arch)
        to_named = lambda cell: [[n[0], self.ops[n[1]], n[2], self.ops[n[3]]] for n in cell]  # noqa: E731
        return {"space": self.name, "normal": to_named(arch.normal), "reduce": to_named(arch.reduce)}

    def from_json(self, obj: dict) -> CnnArch:
        cells = []
        for cname in ("normal", "reduce"):
            if cname not in obj:
                raise SpaceError(f"{self.name}: JSON architecture has no '{cname}' cell")
            raw = obj[cname]
            if not isinstance(raw, list):
                raise SpaceError(f"{self.name}: JSON '{cname}' must be a list of [in1, op1, in2, op2] nodes")
            cell = []
            for j, node in enumerate(raw):
                if not isinstance(node, list) or len(node) != 4:
                    raise SpaceError(f"{self.name}: JSON {cname} node {j} must be [in1, op1, in2, op2]")
                where = f"{self.name}: {cname} node {j}"
                cell.append((json_int(node[0], f"{cname} node {j} input 1"), named_choice(node[1], self.ops, "op name", where),
                             json_int(node[2], f"{cname} node {j} input 2"), named_choice(node[3], self.ops, "op name", where)))
            cells.append(cell)
        return self.make(cells[0], cells[1])

    def op_name(self, op: int) -> str:
        return self.ops[op]

    # -- canonical form and augmentation --------------------------------------------------------------------
    def canonical(self, arch: CnnArch) -> CnnArch:
        return CnnArch(self.name, _canonical_cell(arch.normal), _canonical_cell(arch.reduce))

    def swap_branches(self, arch: CnnArch, rng: np.random.Generator) -> CnnArch:
        """Swap the two branches of one random node per cell (reference §2.3, ref-PT's augmentation)."""
        cells = []
        for cell in arch.cells():
            j = int(rng.integers(0, len(cell)))
            in1, op1, in2, op2 = cell[j]
            cells.append(cell[:j] + ((in2, op2, in1, op1),) + cell[j + 1:])
        return CnnArch(self.name, cells[0], cells[1])

    def loose_ends(self, cell: Cell) -> list[int]:
        """States (inputs included) no node consumes: concatenated to form the cell output (reference §1.1)."""
        return _cell_loose_ends(cell)

    # -- the controller's token protocol --------------------------------------------------------------------
    def augment_tokens(self, tokens: Sequence[int], rng: np.random.Generator) -> list[int]:
        """``swap_branches`` done on the tokens directly (each node's two branches are two equal-width token
        blocks): the controller calls it for every training example of every epoch."""
        out = list(tokens)
        node = self.length // (2 * self.num_nodes)  # tokens per node: 4 (cnn-ws) or 6 (cnn)
        half = node // 2
        for cell in range(2):
            start = (cell * self.num_nodes + int(rng.integers(0, self.num_nodes))) * node
            out[start:start + node] = out[start + half:start + node] + out[start:start + half]
        return out

    def size(self) -> float:
        """Number of ordered encodings of one (normal, reduction) pair (reference §1.1 gives 5.1e12 per cell)."""
        per_cell = float(np.prod([((j + CELL_INPUTS) * len(self.ops)) ** 2 for j in range(self.num_nodes)]))
        return per_cell ** 2


class CnnWsSpace(_CnnSpaceBase):
    """ENAS 5-op space (reference §1.1). Tokens: input i -> i+1 (1..6), op o -> o+7 (7..11); 0 = start; 40 tokens."""

    name, ops = "cnn-ws", CNN_WS_OPS
    vocab_size, length = 12, 40
    index_offset, op_offset = 1, 7

    def encode(self, arch: CnnArch) -> list[int]:
        self.validate(arch)
        return [v + (self.index_offset if k % 2 == 0 else self.op_offset)
                for k, v in enumerate(arch.to_list())]

    def decode(self, tokens: Sequence[int]) -> CnnArch:
        tokens = check_token_seq(self, tokens)
        values = []
        for k, t in enumerate(tokens):
            values.append(t - (self.index_offset if k % 2 == 0 else self.op_offset))
        check_tokens_allowed(self, tokens)
        return self.from_list(values)

    @cached_property
    def transition_mask(self) -> np.ndarray:
        return static_transition_mask(self._position_mask(), self.vocab_size)

    @cached_property
    def index_positions(self) -> np.ndarray:
        """Token positions that choose an input: the first of each (input, op) pair."""
        return read_only(np.arange(self.length) % 2 == 0)

    def _position_mask(self) -> np.ndarray:
        mask = np.zeros((self.length, self.vocab_size), dtype=bool)
        for pos in range(self.length):
            j = (pos % 20) // 4  # node within its cell
            if pos % 2 == 0:
                mask[pos, self.index_offset: self.index_offset + j + CELL_INPUTS] = True
            else:
                mask[pos, self.op_offset: self.op_offset + len(self.ops)] = True
        return mask


class CnnSpace(_CnnSpaceBase):
    """11-op space (reference §1.2). Each branch is three tokens: input i -> i+1 (1..6), op type t -> t+7 (7..11),
    op size s -> s+12 (12..16, sizes 1, 2, 3, 5, 7); 0 = start; 60 tokens, vocabulary 17. Which sizes are
    valid depends on the type just before, so the mask is first-order (``transition_mask``)."""

    name, ops = "cnn", CNN_OPS
    vocab_size, length = 17, 60
    index_offset, type_offset, size_offset = 1, 7, 12

    def encode(self, arch: CnnArch) -> list[int]:
        self.validate(arch)
        vals = arch.to_list()
        out = []
        for inp, op in zip(vals[0::2], vals[1::2]):
            t, s = CNN_OP_TYPE_SIZE[op]
            out += [inp + self.index_offset, t + self.type_offset, s + self.size_offset]
        return out

    def decode(self, tokens: Sequence[int]) -> CnnArch:
        tokens = check_token_seq(self, tokens)
        check_tokens_allowed(self, tokens)
        vals = []
        for k in range(0, self.length, 3):
            t, s = tokens[k + 1] - self.type_offset, tokens[k + 2] - self.size_offset
            vals += [tokens[k] - self.index_offset, CNN_OP_TYPE_SIZE.index((t, s))]
        return self.from_list(vals)

    @cached_property
    def index_positions(self) -> np.ndarray:
        """Token positions that choose an input: the first of each (input, op type, op size) triple."""
        return read_only(np.arange(self.length) % 3 == 0)

    @cached_property
    def transition_mask(self) -> np.ndarray:
        v = self.vocab_size
        mask = np.zeros((self.length, v, v), dtype=bool)
        for pos in range(self.length):
            branch = pos // 3
            j = (branch % 10) // 2
            kind = pos % 3
            if kind == 0:
                mask[pos, :, self.index_offset: self.index_offset + j + CELL_INPUTS] = True
            elif kind == 1:
                mask[pos, :, self.type_offset: self.type_offset + len(CNN_OP_TYPES)] = True
            else:
                for t, s in CNN_OP_TYPE_SIZE:
                    mask[pos, t + self.type_offset, s + self.size_offset] = True
        return read_only(mask)
