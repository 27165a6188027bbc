"""Search spaces (SPEC 1): architecture types, sampling, text/JSON forms, tokens, canonical forms.

Four spaces:
  * ``cnn-ws`` (SPEC 1.1): ENAS 5-op convolutional cells, weight-sharing search.
  * ``cnn``    (SPEC 1.2): the 11-op NASNet-style space of the standalone search (Algorithm 1).
  * ``rnn``    (SPEC 1.3): the ENAS 12-node recurrent cell.
  * ``nb201``  (SPEC 8): NAS-Bench-201's cell, whose every member has a trained accuracy in the benchmark.

Each space object also implements the controller's token protocol (``controller.space.TokenSpace``):
``vocab_size``, ``length``, ``transition_mask``, ``augment_tokens`` and ``canonical_tokens``, so the
controller never imports this package.

Canonical forms go beyond the branch swap of SPEC 1.1: two encodings are the same network when one is a
renumbering of the other's nodes (any topological order) and/or has a node's two branches swapped. The
canonical form is the lexicographically smallest such encoding, so isomorphic cells never fill the pool
twice (SPEC 6, "duplicates detected by exact sequence only").
"""
from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Iterable, Sequence

import numpy as np


class SpaceError(ValueError):
    """An architecture (string, JSON, tokens) that does not belong to the space it is read in."""


# ---------------------------------------------------------------------------------------------------------
# CNN spaces
# ---------------------------------------------------------------------------------------------------------

NUM_NODES = 5  # B = 5 nodes per cell (SPEC 1.1, 1.2)
CELL_INPUTS = 2  # the outputs of the previous two cells: indices 0 and 1 (SPEC 1.1)

CNN_WS_OPS = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity")  # SPEC 1.1 order
CNN_OPS = (  # SPEC 1.2 order; ref-PT prints these ids + 5 (SPEC 7)
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


class _CnnSpaceBase:
    """Shared logic of the two CNN spaces; subclasses set ``name`` and ``ops`` and the token layout."""

    name: str
    ops: tuple[str, ...]
    num_nodes = NUM_NODES
    text_length = 2 * NUM_NODES * 4  # 40 integers (SPEC 7)

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

    # -- text and JSON forms (SPEC 7) -----------------------------------------------------------------------
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
                cell.append((_json_int(node[0], f"{cname} node {j} input 1"), self._op_id(node[1], cname, j),
                             _json_int(node[2], f"{cname} node {j} input 2"), self._op_id(node[3], cname, j)))
            cells.append(cell)
        return self.make(cells[0], cells[1])

    def _op_id(self, op, cname: str, j: int) -> int:
        if isinstance(op, str):
            if op not in self.ops:
                raise SpaceError(f"{self.name}: {cname} node {j}: unknown op name '{op}'; known: {', '.join(self.ops)}")
            return self.ops.index(op)
        return _json_int(op, f"{cname} node {j} op")

    def op_name(self, op: int) -> str:
        return self.ops[op]

    # -- canonical form and augmentation --------------------------------------------------------------------
    def canonical(self, arch: CnnArch) -> CnnArch:
        return CnnArch(self.name, _canonical_cell(arch.normal), _canonical_cell(arch.reduce))

    def swap_branches(self, arch: CnnArch, rng: np.random.Generator) -> CnnArch:
        """Swap the two branches of one random node per cell (SPEC 2.3, ref-PT's augmentation)."""
        cells = []
        for cell in arch.cells():
            j = int(rng.integers(0, len(cell)))
            in1, op1, in2, op2 = cell[j]
            cells.append(cell[:j] + ((in2, op2, in1, op1),) + cell[j + 1:])
        return CnnArch(self.name, cells[0], cells[1])

    def loose_ends(self, cell: Cell) -> list[int]:
        """States (inputs included) no node consumes: concatenated to form the cell output (SPEC 1.1)."""
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

    def canonical_tokens(self, tokens: Sequence[int]) -> tuple[int, ...]:
        return tuple(self.encode(self.canonical(self.decode(tokens))))

    def size(self) -> float:
        """Number of ordered encodings of one (normal, reduction) pair (SPEC 1.1 gives 5.1e12 per cell)."""
        per_cell = float(np.prod([((j + CELL_INPUTS) * len(self.ops)) ** 2 for j in range(self.num_nodes)]))
        return per_cell ** 2


class CnnWsSpace(_CnnSpaceBase):
    """ENAS 5-op space (SPEC 1.1). Tokens: input i -> i+1 (1..6), op o -> o+7 (7..11); 0 = start; 40 tokens."""

    name = "cnn-ws"
    ops = CNN_WS_OPS
    vocab_size = 12
    length = 40
    index_offset = 1
    op_offset = 7

    def encode(self, arch: CnnArch) -> list[int]:
        self.validate(arch)
        return [v + (self.index_offset if k % 2 == 0 else self.op_offset)
                for k, v in enumerate(arch.to_list())]

    def decode(self, tokens: Sequence[int]) -> CnnArch:
        tokens = _check_token_seq(self, tokens)
        values = []
        for k, t in enumerate(tokens):
            values.append(t - (self.index_offset if k % 2 == 0 else self.op_offset))
        _check_tokens_allowed(self, tokens)
        return self.from_list(values)

    @cached_property
    def transition_mask(self) -> np.ndarray:
        return _static_transition_mask(self._position_mask(), self.vocab_size)

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
    """11-op space (SPEC 1.2). Each branch is three tokens: input i -> i+1 (1..6), op type t -> t+7 (7..11),
    op size s -> s+12 (12..16, sizes 1, 2, 3, 5, 7); 0 = start; 60 tokens, vocabulary 17. Which sizes are
    valid depends on the type just before, so the mask is first-order (``transition_mask``)."""

    name = "cnn"
    ops = CNN_OPS
    vocab_size = 17
    length = 60
    index_offset = 1
    type_offset = 7
    size_offset = 12

    def encode(self, arch: CnnArch) -> list[int]:
        self.validate(arch)
        vals = arch.to_list()
        out = []
        for inp, op in zip(vals[0::2], vals[1::2]):
            t, s = CNN_OP_TYPE_SIZE[op]
            out += [inp + self.index_offset, t + self.type_offset, s + self.size_offset]
        return out

    def decode(self, tokens: Sequence[int]) -> CnnArch:
        tokens = _check_token_seq(self, tokens)
        _check_tokens_allowed(self, tokens)
        vals = []
        for k in range(0, self.length, 3):
            t, s = tokens[k + 1] - self.type_offset, tokens[k + 2] - self.size_offset
            vals += [tokens[k] - self.index_offset, CNN_OP_TYPE_SIZE.index((t, s))]
        return self.from_list(vals)

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
        return _read_only(mask)


# ---------------------------------------------------------------------------------------------------------
# RNN space
# ---------------------------------------------------------------------------------------------------------

RNN_NUM_NODES = 12  # ENAS: 12 nodes (SPEC 1.3)
RNN_ACTS = ("tanh", "relu", "sigmoid", "identity")  # SPEC 1.3 / 5.2 order


@dataclass(frozen=True)
class RnnArch:
    """Node 0's activation, then ``(prev, act)`` for nodes 1..11 (prev < node)."""

    space: str
    act0: int
    nodes: tuple  # 11 x (prev, act)

    def to_list(self) -> list[int]:
        return [self.act0] + [v for node in self.nodes for v in node]


class _NoBranchSymmetry:
    """Token protocol of spaces without branch symmetry (rnn: SPEC 1.3; nb201: one op per edge)."""

    def augment_tokens(self, tokens: Sequence[int], rng: np.random.Generator) -> list[int]:
        """Augmentation is the identity."""
        return list(tokens)

    def canonical_tokens(self, tokens: Sequence[int]) -> tuple[int, ...]:
        return tuple(self.encode(self.canonical(self.decode(tokens))))


class RnnSpace(_NoBranchSymmetry):
    """ENAS 12-node recurrent cell (SPEC 1.3). Tokens: prev p -> p+1 (1..11), act a -> a+12 (12..15);
    0 = start; 23 tokens (node 0's activation first), vocabulary 16.

    The cell output is the mean of the loose-end nodes (nodes no other node reads), in search and final
    models alike, so the cell is a tree rooted at node 0 and node renumberings that keep parents before
    children give the same network; the canonical form orders each node's children by their subtrees.
    """

    name = "rnn"
    acts = RNN_ACTS
    ops = RNN_ACTS
    num_nodes = RNN_NUM_NODES
    vocab_size = 16
    length = 23
    prev_offset = 1
    act_offset = 12

    def make(self, act0: int, nodes: Iterable[Sequence[int]]) -> RnnArch:
        nodes = tuple(tuple(int(v) for v in node) for node in nodes)
        arch = RnnArch(self.name, int(act0), nodes)
        return self.validate(arch)

    def validate(self, arch) -> RnnArch:
        if not isinstance(arch, RnnArch) or arch.space != self.name:
            got = getattr(arch, "space", type(arch).__name__)
            raise SpaceError(f"expected an rnn architecture, got {got}")
        if not 0 <= arch.act0 < len(self.acts):
            raise SpaceError(f"rnn: node 0 activation {arch.act0} out of range 0..{len(self.acts) - 1} "
                             f"({', '.join(self.acts)})")
        if len(arch.nodes) != self.num_nodes - 1:
            raise SpaceError(f"rnn: got {len(arch.nodes)} (prev, act) nodes; expected {self.num_nodes - 1}")
        for k, node in enumerate(arch.nodes, start=1):
            if len(node) != 2:
                raise SpaceError(f"rnn: node {k} must be (prev, act)")
            prev, act = node
            if not 0 <= prev < k:
                what = "itself or a later node" if prev >= k else "an index below 0"
                raise SpaceError(f"rnn: node {k} reads node {prev}, {what}; allowed 0..{k - 1}")
            if not 0 <= act < len(self.acts):
                raise SpaceError(f"rnn: node {k} activation {act} out of range 0..{len(self.acts) - 1} "
                                 f"({', '.join(self.acts)})")
        return arch

    def sample(self, rng: np.random.Generator) -> RnnArch:
        act0 = int(rng.integers(0, len(self.acts)))
        nodes = tuple((int(rng.integers(0, k)), int(rng.integers(0, len(self.acts))))
                      for k in range(1, self.num_nodes))
        return RnnArch(self.name, act0, nodes)

    # -- text and JSON (SPEC 7) -----------------------------------------------------------------------------
    def from_list(self, values: Sequence[int]) -> RnnArch:
        n = 2 * (self.num_nodes - 1)
        if len(values) == n:  # ref-TF form: node 0 fixed to tanh (SPEC 1.3)
            values = [0] + list(values)
        if len(values) != n + 1:
            raise SpaceError(f"rnn: got {len(values)} integers; expected {n + 1} (node 0's activation, then "
                             f"'prev act' for nodes 1..{self.num_nodes - 1}) or {n} (ref-TF form, node 0 = tanh)")
        return self.make(values[0], [values[1 + 2 * k: 3 + 2 * k] for k in range(self.num_nodes - 1)])

    def format(self, arch: RnnArch) -> str:
        self.validate(arch)
        return " ".join(str(v) for v in arch.to_list())

    def to_json(self, arch: RnnArch) -> dict:
        self.validate(arch)
        return {"space": self.name, "node0": self.acts[arch.act0],
                "nodes": [[p, self.acts[a]] for p, a in arch.nodes]}

    def from_json(self, obj: dict) -> RnnArch:
        if "nodes" not in obj:
            raise SpaceError("rnn: JSON architecture has no 'nodes' list")
        act0 = self._act_id(obj.get("node0", "tanh"), 0)
        raw = obj["nodes"]
        if not isinstance(raw, list):
            raise SpaceError("rnn: JSON 'nodes' must be a list of [prev, act]")
        nodes = []
        for k, node in enumerate(raw, start=1):
            if not isinstance(node, list) or len(node) != 2:
                raise SpaceError(f"rnn: JSON node {k} must be [prev, act]")
            nodes.append((_json_int(node[0], f"node {k} prev"), self._act_id(node[1], k)))
        return self.make(act0, nodes)

    def _act_id(self, act, k: int) -> int:
        if isinstance(act, str):
            if act not in self.acts:
                raise SpaceError(f"rnn: node {k}: unknown activation '{act}'; known: {', '.join(self.acts)}")
            return self.acts.index(act)
        return _json_int(act, f"node {k} activation")

    def op_name(self, act: int) -> str:
        return self.acts[act]

    # -- structure ------------------------------------------------------------------------------------------
    def loose_ends(self, arch: RnnArch) -> list[int]:
        """Nodes no other node reads; the cell output is their mean (SPEC 1.3)."""
        used = {p for p, _ in arch.nodes}
        return [k for k in range(self.num_nodes) if k not in used]

    def canonical(self, arch: RnnArch) -> RnnArch:
        children = {k: [] for k in range(self.num_nodes)}
        for k, (p, _) in enumerate(arch.nodes, start=1):
            children[p].append(k)
        acts = [arch.act0] + [a for _, a in arch.nodes]

        @lru_cache(maxsize=None)
        def shape(k: int) -> tuple:
            return (acts[k], tuple(sorted(shape(c) for c in children[k])))

        order, parent_of = [], {}

        def visit(k: int) -> None:  # pre-order: parents before children, children by subtree shape
            order.append(k)
            for c in sorted(children[k], key=shape):
                parent_of[c] = k
                visit(c)

        visit(0)
        new = {old: i for i, old in enumerate(order)}
        nodes = tuple((new[parent_of[old]], acts[old]) for old in order[1:])
        return RnnArch(self.name, arch.act0, nodes)

    # -- the controller's token protocol --------------------------------------------------------------------
    def encode(self, arch: RnnArch) -> list[int]:
        self.validate(arch)
        out = [arch.act0 + self.act_offset]
        for p, a in arch.nodes:
            out += [p + self.prev_offset, a + self.act_offset]
        return out

    def decode(self, tokens: Sequence[int]) -> RnnArch:
        tokens = _check_token_seq(self, tokens)
        _check_tokens_allowed(self, tokens)
        vals = [tokens[0] - self.act_offset]
        for k in range(1, self.length, 2):
            vals += [tokens[k] - self.prev_offset, tokens[k + 1] - self.act_offset]
        return self.from_list(vals)

    @cached_property
    def transition_mask(self) -> np.ndarray:
        mask = np.zeros((self.length, self.vocab_size), dtype=bool)
        mask[0, self.act_offset: self.act_offset + len(self.acts)] = True
        for pos in range(1, self.length):
            node = (pos + 1) // 2
            if pos % 2 == 1:
                mask[pos, self.prev_offset: self.prev_offset + node] = True
            else:
                mask[pos, self.act_offset: self.act_offset + len(self.acts)] = True
        return _static_transition_mask(mask, self.vocab_size)

    def size(self) -> float:
        return float(len(self.acts) ** self.num_nodes * np.prod(np.arange(1, self.num_nodes, dtype=float)))


# ---------------------------------------------------------------------------------------------------------
# NAS-Bench-201 space
# ---------------------------------------------------------------------------------------------------------

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")  # SPEC 8, the benchmark's order
NB201_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (source, target) in the text form's order (SPEC 8)
_NB201_CELL = re.compile(r"\|([a-z0-9_]+)~([0-9]+)")


@dataclass(frozen=True)
class Nb201Arch:
    """One NAS-Bench-201 cell: the op of each of the 6 edges, in ``NB201_EDGES`` order (SPEC 8)."""

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


class Nb201Space(_NoBranchSymmetry):
    """NAS-Bench-201's cell space (SPEC 8): 6 edges of a 4-node DAG, 5 ops each, 5^6 = 15,625 cells.

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

    def mutate(self, arch: Nb201Arch, rng: np.random.Generator) -> Nb201Arch:
        """One edge's op replaced by another (regularised evolution's mutation)."""
        ops = list(self.validate(arch).ops)
        edge = int(rng.integers(self.num_edges))
        ops[edge] = (ops[edge] + int(rng.integers(1, len(self.ops)))) % len(self.ops)
        return Nb201Arch(self.name, tuple(ops))

    # -- text and JSON ------------------------------------------------------------------------------------
    def from_list(self, values: Sequence[int]) -> Nb201Arch:
        if len(values) != self.num_edges:
            raise SpaceError(f"nb201: got {len(values)} integers; expected {self.num_edges} op ids, one per edge "
                             "(1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2), or the benchmark's |op~i|+... string")
        return self.make(values)

    def parse(self, text: str) -> Nb201Arch:
        """The benchmark's string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (SPEC 8)."""
        parts = text.strip().split("+")
        if len(parts) != 3:
            raise SpaceError(f"nb201: '{text.strip()}' is not a NAS-Bench-201 cell string: expected 3 nodes "
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
        tokens = _check_token_seq(self, tokens)
        _check_tokens_allowed(self, tokens)
        return self.make(t - self.op_offset for t in tokens)

    @cached_property
    def transition_mask(self) -> np.ndarray:
        mask = np.zeros((self.length, self.vocab_size), dtype=bool)
        mask[:, self.op_offset:] = True
        return _static_transition_mask(mask, self.vocab_size)

    def size(self) -> float:
        return float(len(self.ops) ** self.num_edges)


# ---------------------------------------------------------------------------------------------------------
# helpers and the registry
# ---------------------------------------------------------------------------------------------------------

def _json_int(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpaceError(f"JSON {what} must be an integer, got {json.dumps(v)}")
    return v


def _static_transition_mask(position_mask: np.ndarray, vocab: int) -> np.ndarray:
    return _read_only(np.repeat(position_mask[:, None, :], vocab, axis=1))


def _read_only(a: np.ndarray) -> np.ndarray:
    """Masks are computed once per space object and shared: nobody may change them."""
    a.setflags(write=False)
    return a


def _check_token_seq(space, tokens) -> list[int]:
    tokens = [int(t) for t in tokens]
    if len(tokens) != space.length:
        raise SpaceError(f"{space.name}: token sequence has length {len(tokens)}; expected {space.length}")
    return tokens


def _check_tokens_allowed(space, tokens: list[int]) -> None:
    mask = space.transition_mask
    prev = 0
    for pos, t in enumerate(tokens):
        if not 0 <= t < space.vocab_size or not mask[pos, prev, t]:
            raise SpaceError(f"{space.name}: token {t} is not valid at position {pos}")
        prev = t


SPACES = {"cnn-ws": CnnWsSpace(), "cnn": CnnSpace(), "rnn": RnnSpace(), "nb201": Nb201Space()}


def get_space(name: str):
    try:
        return SPACES[name]
    except KeyError:
        raise SpaceError(f"unknown space '{name}'; choose one of {', '.join(SPACES)}") from None


def parse_arch(text: str, space: str | None = None):
    """Read an architecture from its text form, its JSON form, or a path to a JSON file (SPEC 7).

    ``space`` names the expected space. Without it the JSON's own ``space`` is used, a string starting with
    ``|`` is a NAS-Bench-201 cell, 22 or 23 integers mean ``rnn`` and 40 integers mean ``cnn-ws`` (pass
    ``space='cnn'`` for the 11-op space, ``space='nb201'`` for 6 op ids).
    """
    if not isinstance(text, str) or not text.strip():
        raise SpaceError("empty architecture: give the text form (SPEC 7), a JSON object, or a JSON file path")
    s = text.strip()
    if not s.startswith(("{", "[")) and not s[0].isdigit() and (os.path.isfile(s) or s.endswith(".json") or os.sep in s):
        s = _read_arch_file(s)
    if s.startswith("|"):  # the NAS-Bench-201 string (SPEC 8)
        if space not in (None, "nb201"):
            raise SpaceError(f"'{s}' is a NAS-Bench-201 cell string, but space '{space}' is expected")
        return get_space("nb201").parse(s)
    if s.startswith(("{", "[")):
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            raise SpaceError(f"architecture JSON is malformed: {e.msg} at line {e.lineno} column {e.colno}") from None
        except RecursionError:
            raise SpaceError("architecture JSON is nested too deeply to be an architecture") from None
        if isinstance(obj, list):  # [1, 2, ...]: the integer form in JSON brackets
            if not all(type(v) is int for v in obj):
                raise SpaceError("an architecture JSON list must hold the integers of the text form (SPEC 7)")
            s = " ".join(map(str, obj))
        elif not isinstance(obj, dict):
            raise SpaceError("architecture JSON must be an object with 'space' and its cells")
        else:
            if "arch" in obj and isinstance(obj["arch"], dict):  # a best.json wrapper
                obj = obj["arch"]
            json_space = obj.get("space")
            if json_space is None:
                raise SpaceError("architecture JSON has no 'space' field (cnn-ws, cnn, rnn or nb201)")
            if not isinstance(json_space, str):
                raise SpaceError(f"architecture JSON 'space' must be a name (cnn-ws, cnn, rnn or nb201), not {json_space!r}")
            if space is not None and json_space != space:
                raise SpaceError(f"architecture is of space '{json_space}' but '{space}' is expected")
            return get_space(json_space).from_json(obj)
    fields = s.replace("|", " ").replace(",", " ").split()
    values = []
    for f in fields:
        try:
            values.append(int(f))
        except ValueError:
            raise SpaceError(f"architecture text must be integers (SPEC 7); '{f}' is not an integer") from None
    if space is None:
        if len(values) in (22, 23):
            space = "rnn"
        elif len(values) == 40:
            space = "cnn-ws"
        else:
            raise SpaceError(f"got {len(values)} integers; a CNN architecture has 40, an RNN one 22 or 23 "
                             "(6 op ids with --space nb201)")
    return get_space(space).from_list(values)


def _read_arch_file(path: str) -> str:
    """The stripped text of an architecture file, with one-line errors for anything that is not one."""
    if not os.path.isfile(path):
        what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        raise SpaceError(f"architecture file {path} {what}: pass the text form, JSON, or a JSON file")
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8").strip()
    except OSError as e:
        raise SpaceError(f"architecture file {path} cannot be read ({e.strerror}): check its permissions") from None
    except UnicodeDecodeError:
        raise SpaceError(f"architecture file {path} is not text (not UTF-8): pass a JSON file such as a run's "
                         "best.json") from None
    if not text:
        raise SpaceError(f"architecture file {path} is empty")
    return text


def space_of(arch):
    return get_space(arch.space)


def format_arch(arch) -> str:
    return space_of(arch).format(arch)


def arch_to_json(arch) -> dict:
    return space_of(arch).to_json(arch)
