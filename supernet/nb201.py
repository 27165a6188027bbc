"""The NAS-Bench-201 network (reference §8) as a weight-sharing supernet over the ``nb201`` space, and as the
standalone network of one cell.

Network (reference §8): a stem (3x3 conv to C channels, BN); stage 1 = N cells at C; a ResNet basic block to 2C
at half the size; N cells at 2C; a basic block to 4C; N cells at 4C; BN, ReLU, global average pooling,
linear. ``paper`` sizes are C = 16, N = 5. Every cell instance has its own weights (no sharing across
cells, as in reference §3.1); within a cell, each of the 6 edges holds its ops: the supernet all 5 (``none``,
``skip_connect`` and ``avg_pool_3x3`` hold no weights), a standalone network those of its cell. Module
names are the same in both (``cells.4.edges.2.nor_conv_3x3`` is edge 2<-1 of cell 4), so a standalone
network's parameters are a named subset of the supernet's, as for the CNN (``supernet.cnn``).

``forward(x, arch)`` runs only the ops ``arch`` names, one per edge, and returns ``(logits, None)``: the
CNN's ``(logits, aux_logits)`` convention, so ``cnn.train_step`` and ``cnn.score`` serve this network too.
Supernet BNs keep no running statistics (batch statistics always; scoring changes no buffer, reference §3.1).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops
from .spaces import NB201_EDGES, NB201_OPS, Nb201Arch, SpaceError, get_space

NUM_NODES = 4  # reference §8: node 0 is the cell input, node 3 its output


def make_op(name: str, channels: int, track_stats: bool) -> nn.Module | None:
    """One edge op at stride 1 (reference §8); ``none`` is no module (the edge adds nothing). The convs' ReLU is
    the cell's (``relu_first``), computed once per node however many edges read it."""
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return ops.Pool("avg", 3, 1)
    kernel = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}[name]
    return ops.ReLUConvBN(channels, kernel, 1, track_stats)


class Cell(nn.Module):
    """Node j = sum over i < j of op_ij(node i); the output is node 3 (reference §8). ``choices[e]``: the op names
    edge e (in ``NB201_EDGES`` order) holds modules for."""

    def __init__(self, channels: int, choices: Sequence[Sequence[str]], track_stats: bool):
        super().__init__()
        self.edges = nn.ModuleList(
            nn.ModuleDict({name: m for name in names if (m := make_op(name, channels, track_stats)) is not None})
            for names in choices)

    def forward(self, x: torch.Tensor, cell_ops: Sequence[int]) -> torch.Tensor:
        nodes, relus = [x], {}
        for j in range(1, NUM_NODES):
            total = None
            for e, (src, dst) in enumerate(NB201_EDGES):
                name = NB201_OPS[cell_ops[e]]
                if dst != j or name == "none":
                    continue
                op = self.edges[e][name]
                if getattr(op, "relu_first", False):
                    if src not in relus:
                        relus[src] = F.relu(nodes[src])
                    h = op(relus[src])
                else:
                    h = op(nodes[src])
                total = h if total is None else total + h
            nodes.append(torch.zeros_like(x) if total is None else total)
        return nodes[-1]


def relu_conv_bn(c_in: int, c_out: int, kernel: int, stride: int, track_stats: bool) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         ops.batch_norm(c_out, track_stats))


class ResBlock(nn.Module):
    """The basic block between stages (reference §8): ReLU-conv 3x3 stride 2-BN, ReLU-conv 3x3-BN, plus a shortcut
    of 2x2 average pooling at stride 2 and a 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, track_stats: bool):
        super().__init__()
        self.conv_a = relu_conv_bn(c_in, c_out, 3, 2, track_stats)
        self.conv_b = relu_conv_bn(c_out, c_out, 3, 1, track_stats)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class Network(ops.ChannelsLast):
    """Stem, 3 stages of ``layers`` cells with a basic block between stages, BN-ReLU-pool-linear head.

    ``choices``: the op names every edge of every cell holds (all 5 for the supernet). ``arch``: the one
    cell a standalone network computes (``forward(x)`` then needs none).
    """

    arch: Nb201Arch | None = None

    def __init__(self, layers: int, channels: int, num_classes: int, choices: Sequence[Sequence[str]],
                 track_stats: bool):
        super().__init__()
        if layers < 1 or channels < 1:
            raise ValueError(f"need layers >= 1 and channels >= 1, got N={layers}, C={channels}")
        self.layers, self.channels, self.num_classes = layers, channels, num_classes
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False),
                                  ops.batch_norm(channels, track_stats))
        self.cells = nn.ModuleList()
        self.blocks = nn.ModuleList()
        c = channels
        for stage in range(3):
            if stage:
                self.blocks.append(ResBlock(c, 2 * c, track_stats))
                c *= 2
            self.cells.extend(Cell(c, choices, track_stats) for _ in range(layers))
        self.head_bn = ops.batch_norm(c, track_stats)
        self.classifier = nn.Linear(c, num_classes)
        ops.init_parameters(self)

    def forward(self, x: torch.Tensor, arch: Nb201Arch | None = None, progress: float = 1.0):
        """``(logits, None)``; ``progress`` is unused (no drop-path), taken for ``cnn.train_step``."""
        arch = self.arch if arch is None else arch
        if not isinstance(arch, Nb201Arch):
            raise SpaceError(f"this network computes nb201 cells, got {getattr(arch, 'space', arch)}")
        if self.arch is not None and arch != self.arch:
            raise ValueError("a standalone network computes only the cell it was built for")
        x = self.input_layout(x)
        x = self.stem(x)
        for k, cell in enumerate(self.cells):
            if k and k % self.layers == 0:
                x = self.blocks[k // self.layers - 1](x)
            x = cell(x, arch.ops)
        x = F.relu(self.head_bn(x))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1)), None

    def arch_parameters(self, arch: Nb201Arch) -> int:
        """Parameters of the standalone network of ``arch`` at this network's sizes: every weight outside
        the cells plus those of the ops ``arch`` names (``none`` edges and pools hold none)."""
        names = [NB201_OPS[o] for o in get_space("nb201").validate(arch).ops]
        cells = sum(p.numel() for c in self.cells for p in c.parameters())
        used = sum(p.numel() for c in self.cells for e, name in enumerate(names) if name in c.edges[e]
                   for p in c.edges[e][name].parameters())
        return sum(p.numel() for p in self.parameters()) - cells + used


class Supernet(Network):
    """Every edge of every cell holds all 5 ops (reference §8); ``model(x, arch)`` runs only ``arch``'s."""

    def __init__(self, layers: int, channels: int, num_classes: int = 10):
        super().__init__(layers, channels, num_classes, [NB201_OPS] * len(NB201_EDGES), track_stats=False)

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "Supernet":
        return cls(recipe.layers, recipe.channels, num_classes)


class Nb201Network(Network):
    """The standalone network of one cell (BNs with running statistics); ``from_supernet`` copies the
    weights the supernet uses for the cell."""

    def __init__(self, arch: Nb201Arch, layers: int, channels: int, num_classes: int = 10):
        arch = get_space("nb201").validate(arch)
        super().__init__(layers, channels, num_classes, [(NB201_OPS[o],) for o in arch.ops], track_stats=True)
        self.arch = arch

    @classmethod
    def from_supernet(cls, supernet: Supernet, arch: Nb201Arch) -> "Nb201Network":
        net = cls(arch, supernet.layers, supernet.channels, supernet.num_classes)
        return ops.inherit_weights(net.to(next(supernet.parameters()).device), supernet)
