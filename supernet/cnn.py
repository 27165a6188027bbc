"""CNN cells, the network around them, and the weight-sharing supernet (reference §3.1) with scoring and a
training step for the search loop.

The network (reference §3.1, §5.1; ref-PT's ``NASNetworkCIFAR``): a stem (3x3 conv to 3C channels, BN), then
three stages of N cells with a reduction cell between stages (3N + 2 cells; a reduction cell doubles the
channels and halves the size), global average pooling, dropout, a linear classifier, and an optional
auxiliary head on the output of the second reduction cell. Cell k reads the outputs of cells k-2 and k-1
(the stem for the first two), each brought to the cell's channel count by an ``InputCalibration``.

A cell's output is the plain concatenation of its loose ends (reference §1.1); in a reduction cell a loose end
that is a cell input (still at the larger size) first goes through a factorized reduce. This holds for the
supernet and the final networks alike, so the supernet running an architecture computes exactly the final
network of that architecture (with shared weights), unlike ENAS and ref-PT, whose supernet cells end in an
extra 1x1 "combine" conv (reference §6). What makes it possible with a varying number of loose ends: every
convolution reading a cell output holds one weight block per state that can be a loose end
(``ops.PieceConv``) and uses the blocks of the sampled architecture's loose ends.

Both networks are one class, :class:`CellNetwork`, built over *choices*: for every node branch, the
``(input, op)`` pairs that get modules. The supernet builds all of them; a final network
(``nets.NASNetwork``) builds only its architecture's. Module names are the same in both (e.g.
``cells.3.nodes.2.branches.0.1.sep_conv_3x3`` is branch 0 of node 2 of cell 3 reading state 1 through a
3x3 sep-conv), so a final network's parameters are a named subset of the supernet's. That gives the
weight-sharing granularity of reference §3.1 directly: ops are private to a cell instance, node, branch, op and
input index (which also gives every sep-conv's BN affine parameters per input index), and every supernet
parameter belongs to some architecture's network: no dead parameters (reference §6).

Supernet BNs keep no running statistics: they always normalise with the current batch, so scoring is
side-effect free (reference §3.1).

Memory format: on CPU the input is made channels-last in ``forward`` (weights may stay as they are; every
conv then runs channels-last): PyTorch's CPU depthwise-conv backward and pooling are several times faster
that way. On CUDA it is opt-in (``use_channels_last``, the ``--channels-last`` flag).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import ops, optim
from .spaces import CELL_INPUTS, NUM_NODES, CnnArch, SpaceError, get_space
from .steps import StepResult

STEM_MULTIPLIER = 3  # CIFAR stem conv to 3C channels (reference §5.1, ref-PT)
STEM_PIECES = (0,)  # the stem output is one piece
STEMS = ("cifar", "imagenet")  # 32x32 inputs (reference §5.1), or 224x224 (reference §5.3)
AUX_POOL_STRIDE = {"cifar": 3, "imagenet": 2}  # the aux head's pool over an 8x8 / 7x7 map (ref-PT)
NUM_STATES = CELL_INPUTS + NUM_NODES  # states of a cell: 2 inputs + 5 nodes (reference §1.1)


# -- what a cell can compute ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellChoices:
    """The ops one cell type gets modules for.

    ``branches[j][b]`` lists the ``(input, op name)`` pairs of branch b of node j; ``loose`` lists the
    states that can be loose ends (their order is the order of the concatenated output).
    """

    branches: tuple
    loose: tuple


def all_choices(op_names: Sequence[str]) -> CellChoices:
    """Every input and op for every branch; every state can be a loose end (the supernet)."""
    branches = tuple(
        tuple(tuple((i, op) for i in range(j + CELL_INPUTS) for op in op_names) for _ in range(2))
        for j in range(NUM_NODES))
    return CellChoices(branches, tuple(range(NUM_STATES)))


def cell_choices(cell: tuple, op_names: Sequence[str], loose: Sequence[int]) -> CellChoices:
    """Exactly one cell's ops and loose ends (a final network)."""
    branches = tuple((((in1, op_names[op1]),), ((in2, op_names[op2]),)) for in1, op1, in2, op2 in cell)
    return CellChoices(branches, tuple(loose))


# -- the cell -------------------------------------------------------------------------------------------------

class Node(nn.Module):
    """Two branches, each an op applied to a state, summed. ``branches[b][str(input)][op]`` holds the op
    module of every choice the node was built with."""

    def __init__(self, choices: tuple, channels: int, reduction: bool, track_stats: bool):
        super().__init__()
        self.branches = nn.ModuleList()
        for branch in choices:
            by_input = nn.ModuleDict()
            for i, op in branch:
                stride = 2 if reduction and i < CELL_INPUTS else 1  # reference §1.1
                if str(i) not in by_input:
                    by_input[str(i)] = nn.ModuleDict()
                by_input[str(i)][op] = ops.make_op(op, channels, stride, track_stats)
            self.branches.append(by_input)

    def forward(self, states: list, relus: dict, choice: tuple, keep: float) -> torch.Tensor:
        """``relus``: the ReLU of each state some op read already (filled here as needed)."""
        out = None
        for b, (i, op) in enumerate(choice):
            module = self.branches[b][str(i)][op]
            if getattr(module, "relu_first", False):
                if i not in relus:
                    relus[i] = F.relu(states[i])
                x = relus[i]
            else:
                x = states[i]
            h = module(x)
            if not isinstance(module, nn.Identity):  # drop-path spares plain identities (ENAS, ref-TF)
                mask = ops.drop_path_mask(h, keep)
                h = h if mask is None else h * mask
            out = h if out is None else out + h
        return out


class Cell(nn.Module):
    """Calibrate the two inputs, compute five nodes, concatenate the loose ends (reference §1.1)."""

    def __init__(self, choices: CellChoices, channels: int, reduction: bool, op_names: Sequence[str],
                 in0: tuple, in1: tuple, reduce_in0: bool, track_stats: bool):
        """``in0``/``in1``: (channels per piece, pieces) of the outputs this cell reads; ``reduce_in0``: the
        first input is twice the size of the second (the previous cell was a reduction cell)."""
        super().__init__()
        self.reduction = reduction
        self.op_names = tuple(op_names)
        self.calib0 = ops.InputCalibration(in0[0], in0[1], channels, reduce_in0, track_stats)
        self.calib1 = ops.InputCalibration(in1[0], in1[1], channels, False, track_stats)
        self.nodes = nn.ModuleList(Node(c, channels, reduction, track_stats) for c in choices.branches)
        self.loose_reduce = nn.ModuleDict(
            {str(i): ops.FactorizedReduce(channels, channels, track_stats)
             for i in choices.loose if reduction and i < CELL_INPUTS})

    def forward(self, r0, which0, r1, which1, cell: tuple, loose: Sequence[int], keep: float) -> torch.Tensor:
        """``r0``, ``r1``: the ReLU'd outputs of the previous two cells, made of the pieces ``which0``/``which1``."""
        states = [self.calib0(r0, which0), self.calib1(r1, which1)]
        relus = {}
        names = self.op_names
        for node, (in1, op1, in2, op2) in zip(self.nodes, cell):
            states.append(node(states, relus, ((in1, names[op1]), (in2, names[op2])), keep))
        out = [self.loose_reduce[str(i)](states[i]) if self.reduction and i < CELL_INPUTS else states[i]
               for i in loose]
        return out[0] if len(out) == 1 else torch.cat(out, 1)


# -- the network ----------------------------------------------------------------------------------------------

class CellNetwork(ops.ChannelsLast):
    """Stem, 3 stages of ``layers`` cells with reduction cells between, classifier, optional aux head.

    ``normal`` / ``reduce`` are the choices each cell type is built with (see the module docstring).
    ``stem``: ``cifar`` (one 3x3 conv to 3C; both inputs of the first cell are its output) or ``imagenet``
    (``ops.ImageNetStem``: the input shrunk 8 times; the first cell reads its two outputs, input 0 at twice
    the size, so it is calibrated by a factorized reduce as after a reduction cell).
    ``forward(x, arch, progress)`` returns ``(logits, aux_logits)``; aux logits only in training mode
    with an aux head, else None. ``progress`` in [0, 1] (training progress) drives drop-path.
    """

    def __init__(self, space: str, layers: int, channels: int, num_classes: int, normal: CellChoices,
                 reduce: CellChoices, *, aux: bool, drop_path_keep: float, head_keep: float, track_stats: bool,
                 stem: str = "cifar"):
        super().__init__()
        if layers < 1 or channels < 2 or channels % 2:
            raise ValueError(f"need layers >= 1 and an even channel count >= 2, got N={layers}, C={channels}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        self.space = get_space(space)
        self.layers, self.channels, self.num_classes = layers, channels, num_classes
        self.drop_path_keep = drop_path_keep
        self.reduction_cells = (layers, 2 * layers + 1)  # ref-PT's pool_layers (reference §3.1)
        self.aux_index = self.reduction_cells[-1]  # aux head after the second reduction (reference §5.1)
        if stem == "cifar":
            stem_channels = STEM_MULTIPLIER * channels
            self.stem = ops.CifarStem(stem_channels, track_stats)
        else:
            stem_channels = channels
            self.stem = ops.ImageNetStem(channels, track_stats)
        outputs = [(stem_channels, STEM_PIECES), (stem_channels, STEM_PIECES)]  # (piece channels, pieces)
        prev_reduction = stem == "imagenet"  # the first cell's input 0 is twice the size of its input 1
        self.cells = nn.ModuleList()
        self.aux_head = None
        c = channels
        for k in range(3 * layers + 2):
            reduction = k in self.reduction_cells
            c = 2 * c if reduction else c
            choices = reduce if reduction else normal
            cell = Cell(choices, c, reduction, self.space.ops, outputs[0], outputs[1], prev_reduction, track_stats)
            self.cells.append(cell)
            outputs = [outputs[1], (c, choices.loose)]
            prev_reduction = reduction
            if aux and k == self.aux_index:
                self.aux_head = ops.AuxHead(c, choices.loose, num_classes, track_stats, AUX_POOL_STRIDE[stem])
        self.classifier = ops.Classifier(c, outputs[1][1], num_classes, head_keep)
        ops.init_parameters(self)

    def forward(self, x: torch.Tensor, arch: CnnArch, progress: float = 1.0):
        if arch.space != self.space.name:
            raise SpaceError(f"this network is for {self.space.name} architectures, got a {arch.space} one")
        x = self.input_layout(x)
        cells = (arch.normal, arch.reduce)
        loose = (self.space.loose_ends(arch.normal), self.space.loose_ends(arch.reduce))
        # every reader of a cell output but the classifier starts with a ReLU: it is computed once, here
        r0, r1 = self.stem(x)
        w0 = w1 = STEM_PIECES
        aux = None
        n = len(self.cells)
        for k, cell in enumerate(self.cells):
            red = int(cell.reduction)
            keep = 1.0
            if self.training and self.drop_path_keep < 1.0:
                keep = ops.drop_path_keep(self.drop_path_keep, k, n, progress)
            out = cell(r0, w0, r1, w1, cells[red], loose[red], keep)
            if k == n - 1:
                return self.classifier(out, loose[red]), aux  # the classifier reads the output as it is
            (r0, w0), (r1, w1) = (r1, w1), (F.relu(out), loose[red])
            if k == self.aux_index and self.aux_head is not None and self.training:
                aux = self.aux_head(r1, loose[red])


def head_options(recipe) -> dict:
    """The heads and drop-path a training recipe asks for (``recipes.CnnSupernet`` or ``CnnFinal``)."""
    return {"aux": recipe.aux_weight > 0, "drop_path_keep": recipe.drop_path_keep, "head_keep": recipe.head_keep}


class Supernet(CellNetwork):
    """The weight-sharing supernet over a CNN space (reference §3.1); ``model(x, arch)`` runs only ``arch``.
    Without keywords: no aux head, no dropout, no drop-path; ``from_recipe`` sets them from a recipe."""

    def __init__(self, space: str, layers: int, channels: int, num_classes: int = 10, *,
                 aux: bool = False, drop_path_keep: float = 1.0, head_keep: float = 1.0):
        choices = all_choices(get_space(space).ops)
        super().__init__(space, layers, channels, num_classes, choices, choices, aux=aux,
                         drop_path_keep=drop_path_keep, head_keep=head_keep, track_stats=False)

    @classmethod
    def from_recipe(cls, space: str, recipe, num_classes: int) -> "Supernet":
        """The supernet of ``recipe`` (``recipes.CnnSupernet``): its N, C, heads and drop-path."""
        return cls(space, recipe.layers, recipe.channels, num_classes, **head_options(recipe))


# -- training step and scoring -------------------------------------------------------------------------------

def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when ``amp``; a no-op context elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def train_step(model: CellNetwork, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               arch: CnnArch | None = None, *, grad_clip: float, aux_weight: float = 0.0,
               progress: float = 1.0, amp: bool = False, sync: bool = True, unsampled: str = "skip",
               label_smoothing: float = 0.0, average: Callable[[torch.Tensor], torch.Tensor] | None = None
               ) -> StepResult:
    """One SGD step on a batch: cross-entropy (+ ``aux_weight`` x the aux head's), gradient-norm clip (none at
    ``grad_clip`` 0), update. ``arch``: the sampled architecture (supernet), or a list of them whose gradients
    on the batch are summed before the one update (fair sampling); None for a final network. ``unsampled``
    (``optim.zero_grads``): ``skip`` gives parameters off the sampled path no gradient (None), so the
    optimiser leaves them, momentum included, untouched; ``decay`` gives them zero gradients, so weight
    decay and momentum reach them (reference §3.1). ``label_smoothing``: both cross-entropies against targets
    smoothed by that much (reference §5.3). Any network whose ``forward(x, arch, progress)`` returns
    ``(logits, aux_logits or None)`` fits (``nb201.Network`` too, and a data-parallel wrapper of one).
    A non-finite loss or gradient skips the update and gives ``finite=False``; with a fused optimiser
    (``optim.sgd``) that is decided on the device. ``average``: in a data-parallel training, the mean of a
    tensor over the processes; the step's loss and accuracy are averaged before the decision, so every
    process reports the same numbers and skips the same steps. ``sync=False`` returns the loss, accuracy
    and flag as device tensors instead of numbers, so the step never waits for the device."""
    if not model.training:
        model.train()
    optim.zero_grads(optimizer, unsampled)
    totals, losses, accs = [], [], []
    for a in arch if isinstance(arch, list) else [arch]:  # several: their gradients summed, one update
        with autocast(x.device, amp):
            logits, aux = model(x, progress=progress) if a is None else model(x, a, progress=progress)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        total = loss
        if aux is not None and aux_weight != 0:
            total = loss + aux_weight * F.cross_entropy(aux.float(), y, label_smoothing=label_smoothing)
        total.backward()
        totals.append(total.detach())
        losses.append(loss.detach())
        accs.append((logits.argmax(1) == y).float().mean())
    # the optimiser's flat parameter list: walking the supernet's ~10^4 modules would cost more than a step
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    grad_norm = nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)  # 0: no clip
    results = torch.stack([torch.stack(v).mean() for v in (totals, losses, accs)])
    if average is not None:
        results = average(results)
    finite = torch.isfinite(results[0]) & torch.isfinite(grad_norm)
    optim.step_if_finite(optimizer, finite, keep_grads=unsampled == "decay")
    if not sync:
        return StepResult(results[1], finite, acc=results[2])
    loss_v, acc_v, ok = optim.host_values(results[1], results[2], finite)
    return StepResult(loss_v, bool(ok), acc=acc_v)


class Score(NamedTuple):
    acc: float  # fraction of the dev images classified correctly
    loss: float  # mean cross-entropy per image




def score(model: nn.Module, archs: Sequence, batches: Sequence[tuple], *, amp: bool = False,
          calibration: Sequence[tuple] | None = None) -> list[Score]:
    """Accuracy and loss of every architecture on the same fixed batches, with inherited weights.

    ``batches``: ``(x, y)`` pairs already on the model's device (fixed batches of dev images). Inference
    mode, no dropout, drop-path or aux head. BN: without ``calibration`` each BN normalises with each
    batch's own statistics (the supernet keeps no running statistics); with it, each architecture's BN
    statistics are first measured on the ``calibration`` batches and the batches are then scored with
    them (:func:`recalibrated_bn`), so the score of an architecture depends neither on the other images
    of its batch nor on the order of ``archs``. No parameter or buffer changes either way. One device sync
    for the whole list. Any network with ``forward(x, arch)`` -> ``(logits, ...)`` fits.
    """
    was_training = model.training
    model.eval()
    device = batches[0][0].device
    n_images = sum(len(y) for _, y in batches)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)] if calibration else []
    try:
        with torch.inference_mode(), autocast(device, amp):
            sums = torch.zeros(len(archs), 2, device=device)
            for a, arch in enumerate(archs):
                with recalibrated_bn(model, arch, bns, calibration):
                    for x, y in batches:
                        logits = model(x, arch)[0].float()
                        sums[a, 0] += (logits.argmax(1) == y).sum()
                        sums[a, 1] += F.cross_entropy(logits, y, reduction="sum")
    finally:
        model.train(was_training)
    return [Score(acc, loss) for acc, loss in (sums / n_images).tolist()]


@contextmanager
def recalibrated_bn(model: nn.Module, arch, bns: Sequence[nn.BatchNorm2d], calibration: Sequence[tuple] | None):
    """Within the block, the BNs ``bns`` of ``model`` (in eval mode) normalise with ``arch``'s statistics,
    the exact mean of the per-batch statistics of the ``calibration`` images: fresh running buffers, a
    cumulative average (momentum None) over one pass. After it they are as before (a supernet's keep no
    statistics). No-op without ``calibration``."""
    if not calibration:
        yield
        return
    keys = ("momentum", "track_running_stats", "running_mean", "running_var", "num_batches_tracked")
    saved = [{k: getattr(bn, k) for k in keys} for bn in bns]
    device = calibration[0][0].device
    try:
        for bn in bns:
            bn.running_mean = torch.zeros(bn.num_features, device=device)
            bn.running_var = torch.ones(bn.num_features, device=device)
            bn.num_batches_tracked = torch.zeros((), dtype=torch.long, device=device)
            bn.momentum, bn.track_running_stats = None, True
            bn.train()
        for x, _ in calibration:
            model(x, arch)
        for bn in bns:
            bn.eval()
        yield
    finally:
        for bn, attrs in zip(bns, saved):
            for k, v in attrs.items():
                setattr(bn, k, v)
            bn.train(model.training)
