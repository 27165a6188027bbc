"""The recurrent cell space (reference §1.3): ENAS's 12-node cell."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Iterable, Sequence

import numpy as np

from .base import (NoBranchSymmetry, Space, SpaceError, changed, check_token_seq, check_tokens_allowed, json_int,
                   named_choice, read_only, static_transition_mask)

RNN_NUM_NODES = 12  # ENAS: 12 nodes (reference §1.3)
RNN_ACTS = ("tanh", "relu", "sigmoid", "identity")  # reference §1.3 / 5.2 order


@dataclass(frozen=True)
class RnnArch:
    """Node 0's activation, then ``(prev, act)`` for nodes 1..11 (prev < node)."""

    space: str
    act0: int
    nodes: tuple  # 11 x (prev, act)

    def to_list(self) -> list[int]:
        return [self.act0] + [v for node in self.nodes for v in node]


class RnnSpace(NoBranchSymmetry, Space):
    """ENAS 12-node recurrent cell (reference §1.3). Tokens: prev p -> p+1 (1..11), act a -> a+12 (12..15);
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

    def change_one(self, arch: RnnArch, rng: np.random.Generator) -> RnnArch:
        """One decision with a choice drawn uniformly and set to another value: node 0's activation, or a node's
        input or activation (value 1, node 1's input, has no other choice than node 0)."""
        values = self.validate(arch).to_list()
        k = int(rng.integers(len(values) - 1))
        k += k > 0  # skip value 1
        values[k] = changed(values[k], (k + 1) // 2 if k % 2 else len(self.acts), rng)  # odd k: node (k+1)//2's input
        return self.from_list(values)

    def decision_sizes(self) -> list[int]:
        """Choices of each value of the integer form: node 0's activation, then each node's input and activation."""
        return [len(self.acts)] + [n for k in range(1, self.num_nodes) for n in (k, len(self.acts))]

    # -- text and JSON (reference §7) -----------------------------------------------------------------------------
    def from_list(self, values: Sequence[int]) -> RnnArch:
        n = 2 * (self.num_nodes - 1)
        if len(values) == n:  # ref-TF form: node 0 fixed to tanh (reference §1.3)
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
        act0 = named_choice(obj.get("node0", "tanh"), self.acts, "activation", "rnn: node 0")
        raw = obj["nodes"]
        if not isinstance(raw, list):
            raise SpaceError("rnn: JSON 'nodes' must be a list of [prev, act]")
        nodes = []
        for k, node in enumerate(raw, start=1):
            if not isinstance(node, list) or len(node) != 2:
                raise SpaceError(f"rnn: JSON node {k} must be [prev, act]")
            nodes.append((json_int(node[0], f"node {k} prev"),
                          named_choice(node[1], self.acts, "activation", f"rnn: node {k}")))
        return self.make(act0, nodes)

    def op_name(self, act: int) -> str:
        return self.acts[act]

    # -- structure ------------------------------------------------------------------------------------------
    def loose_ends(self, arch: RnnArch) -> list[int]:
        """Nodes no other node reads; the cell output is their mean (reference §1.3)."""
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
        tokens = check_token_seq(self, tokens)
        check_tokens_allowed(self, tokens)
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
        return static_transition_mask(mask, self.vocab_size)

    @cached_property
    def index_positions(self) -> np.ndarray:
        """Token positions that choose an input: each node's ``prev`` (odd positions)."""
        return read_only(np.arange(self.length) % 2 == 1)

    def size(self) -> float:
        return float(len(self.acts) ** self.num_nodes * np.prod(np.arange(1, self.num_nodes, dtype=float)))
