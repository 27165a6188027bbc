"""Every op of the two CNN spaces (reference §1.1, §1.2), shared by the supernet (``cnn.py``) and the final
networks (``nets.py``), plus input calibration, the heads and scheduled drop-path. Plain PyTorch modules.

``track_stats`` picks the BatchNorm flavour: final networks keep running statistics; the supernet does
not (``track_running_stats=False``), so it always normalises with the statistics of the batch at hand and
scoring an architecture can never change a buffer (reference §3.1, §6).

Ops that start with a ReLU (``relu_first = True``) leave it to their caller, which computes the ReLU of
a state once however many ops read it: their input is the ReLU'd state.

Convolutions over a cell output take the output as a concatenation of equal *pieces* (the cell's loose
ends, reference §1.1) and hold one weight block per piece (:class:`PieceConv`). A final network holds blocks for
its architecture's loose ends; the supernet holds a block for every state that can be a loose end and uses
those of the sampled architecture. Both compute a plain convolution over the concatenation.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-5  # PyTorch default, as in ref-PT (reference §3.1)
AUX_HIDDEN = 128  # auxiliary head: 1x1 conv to 128, 2x2 conv to 768 (NASNet / ref-PT, reference §5.1)
AUX_FEATURES = 768  # reference §5.1


def batch_norm(channels: int, track_stats: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, affine=True, track_running_stats=track_stats)


def drop_bn_affine(model: nn.Module) -> nn.Module:
    """``model`` with every BN's learned scale and shift removed: normalisation only, as in NAS-Bench-201's and
    NASLib's supernets."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.affine:
            m.affine = False
            m.register_parameter("weight", None)
            m.register_parameter("bias", None)
    return model


def inherit_weights(net: nn.Module, supernet: nn.Module) -> nn.Module:
    """Copy into ``net`` every parameter the supernet holds under the same name: the weights a stand-alone
    network of one architecture inherits. A supernet without BN scales and shifts leaves them at 1 and 0."""
    shared = dict(supernet.named_parameters())
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in shared:
                p.copy_(shared[name])
    return net


def depthwise_conv(channels: int, kernel: int, stride: int) -> nn.Conv2d:
    """A kxk depthwise convolution with "same" padding."""
    return nn.Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)


# -- the ops of the two spaces --------------------------------------------------------------------------------

class ChannelsLast(nn.Module):
    """A network whose input runs channels-last on CPU, where convolutions and pooling are faster that way, and
    on every device after ``use_channels_last`` (weights converted too: CUDA's opt-in)."""

    channels_last = False

    def use_channels_last(self) -> "ChannelsLast":
        self.channels_last = True
        return self.to(memory_format=torch.channels_last)

    def input_layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last or x.device.type == "cpu":
            return x.contiguous(memory_format=torch.channels_last)
        return x


class SepConv(nn.Sequential):
    """Twice (ReLU, depthwise kxk, pointwise 1x1, BN); only the first depthwise conv strides (reference §1.1).
    The first ReLU is the caller's (``relu_first``)."""

    relu_first = True

    def __init__(self, channels: int, kernel: int, stride: int, track_stats: bool):
        super().__init__(
            depthwise_conv(channels, kernel, stride), nn.Conv2d(channels, channels, 1, bias=False),
            batch_norm(channels, track_stats), nn.ReLU(inplace=True),
            depthwise_conv(channels, kernel, 1), nn.Conv2d(channels, channels, 1, bias=False),
            batch_norm(channels, track_stats))


class ReLUConvBN(nn.Sequential):
    """(ReLU,) kxk conv, BN: the 11-op space's conv 1x1 and conv 3x3 (reference §1.2)."""

    relu_first = True

    def __init__(self, channels: int, kernel: int, stride: int, track_stats: bool):
        super().__init__(nn.Conv2d(channels, channels, kernel, stride, kernel // 2, bias=False),
                         batch_norm(channels, track_stats))


class FactorizedConv(nn.Sequential):
    """(ReLU,) 1xk conv, BN, ReLU, kx1 conv, BN (conv 1x3+3x1 and 1x7+7x1, reference §1.2; ref-PT's ``Conv``)."""

    relu_first = True

    def __init__(self, channels: int, kernel: int, stride: int, track_stats: bool):
        pad = kernel // 2
        super().__init__(
            nn.Conv2d(channels, channels, (1, kernel), (1, stride), (0, pad), bias=False),
            batch_norm(channels, track_stats), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, (kernel, 1), (stride, 1), (pad, 0), bias=False),
            batch_norm(channels, track_stats))


class Pool(nn.Module):
    """Max or average kxk pooling that keeps (stride 1) or halves (stride 2) the size; average pooling
    excludes the padding (reference §1.1). An even kernel at stride 1 pads one row and column at the bottom
    right (pooling with padding 1 and dropping the first output row and column)."""

    def __init__(self, kind: str, kernel: int, stride: int):
        super().__init__()
        self.kind, self.kernel, self.stride = kind, kernel, stride
        self.padding = 1 if kernel % 2 == 0 and stride == 1 else (kernel - 1) // 2
        self.crop = kernel % 2 == 0 and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            y = F.max_pool2d(x, self.kernel, self.stride, self.padding)
        else:
            y = F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=False)
        return y[:, :, 1:, 1:] if self.crop else y


class PieceConv(nn.Module):
    """A 1x1 convolution over a concatenation of equally wide pieces, with one weight block per piece.

    ``pieces`` names the blocks it holds (state indices of a cell); ``forward(x, which)`` convolves
    ``x`` = the concatenation of the pieces ``which`` (in that order) with those blocks side by side.
    Blocks not named in ``which`` take no part, so they get no gradient.
    """

    def __init__(self, piece_channels: int, pieces: Sequence[int], out_channels: int, bias: bool = False):
        super().__init__()
        self.blocks = nn.ParameterDict(
            {str(p): nn.Parameter(torch.empty(out_channels, piece_channels, 1, 1)) for p in pieces})
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def weight(self, which: Sequence[int]) -> torch.Tensor:
        """The blocks of the pieces ``which`` side by side: the weight of a convolution over their concatenation."""
        blocks = [self.blocks[str(p)] for p in which]
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, 1)

    def forward(self, x: torch.Tensor, which: Sequence[int]) -> torch.Tensor:
        return F.conv2d(x, self.weight(which), self.bias)


class FactorizedReduce(nn.Module):
    """Halve H and W without dropping pixels: two 1x1 stride-2 convs on grids offset by one pixel,
    concatenated, then BN (reference §1.1). The input may be a concatenation of pieces (see PieceConv).

    Both convs run as one 2x2 stride-2 convolution whose kernel is conv_a's weights at tap (0, 0) and
    conv_b's at tap (1, 1), zeros elsewhere: the same output without slicing the input for the offset grid
    or concatenating the halves."""

    def __init__(self, piece_channels: int, out_channels: int, track_stats: bool, pieces: Sequence[int] = (0,)):
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"factorized reduce needs an even channel count, got {out_channels}")
        self.conv_a = PieceConv(piece_channels, pieces, out_channels // 2)  # applied at stride 2 in forward
        self.conv_b = PieceConv(piece_channels, pieces, out_channels // 2)
        self.bn = batch_norm(out_channels, track_stats)

    def forward(self, x: torch.Tensor, which: Sequence[int] = (0,)) -> torch.Tensor:
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"factorized reduce needs an even height and width, got {tuple(x.shape[2:])}")
        weight = torch.cat([F.pad(self.conv_a.weight(which), (0, 1, 0, 1)),  # tap (0, 0): pixels (2i, 2j)
                            F.pad(self.conv_b.weight(which), (1, 0, 1, 0))])  # tap (1, 1): pixels (2i+1, 2j+1)
        return self.bn(F.conv2d(x, weight, None, 2))


OpFactory = Callable[[int, int, bool], nn.Module]  # (channels, stride, track_stats) -> op

OPS: dict[str, OpFactory] = {
    # reference §1.1 (cnn-ws)
    "sep_conv_3x3": lambda c, s, t: SepConv(c, 3, s, t),
    "sep_conv_5x5": lambda c, s, t: SepConv(c, 5, s, t),
    "avg_pool_3x3": lambda c, s, t: Pool("avg", 3, s),
    "max_pool_3x3": lambda c, s, t: Pool("max", 3, s),
    # identity on a stride-2 input becomes a factorized reduce (reference §1.1)
    "identity": lambda c, s, t: nn.Identity() if s == 1 else FactorizedReduce(c, c, t),
    # reference §1.2 (cnn), besides identity
    "conv_1x1": lambda c, s, t: ReLUConvBN(c, 1, s, t),
    "conv_3x3": lambda c, s, t: ReLUConvBN(c, 3, s, t),
    "conv_1x3_3x1": lambda c, s, t: FactorizedConv(c, 3, s, t),
    "conv_1x7_7x1": lambda c, s, t: FactorizedConv(c, 7, s, t),
    "max_pool_2x2": lambda c, s, t: Pool("max", 2, s),
    "max_pool_5x5": lambda c, s, t: Pool("max", 5, s),
    "avg_pool_2x2": lambda c, s, t: Pool("avg", 2, s),
    "avg_pool_5x5": lambda c, s, t: Pool("avg", 5, s),
}


def make_op(name: str, channels: int, stride: int, track_stats: bool) -> nn.Module:
    return OPS[name](channels, stride, track_stats)


# -- around the cells ------------------------------------------------------------------------------------------

class InputCalibration(nn.Module):
    """Bring a cell input to the cell's channel count: (ReLU,) 1x1 conv, BN; or, when the input comes from
    before a reduction cell (twice the size), (ReLU and) a factorized reduce (reference §5.1)."""

    relu_first = True

    def __init__(self, piece_channels: int, pieces: Sequence[int], out_channels: int, reduce: bool,
                 track_stats: bool):
        super().__init__()
        self.reduce = reduce
        if reduce:
            self.fr = FactorizedReduce(piece_channels, out_channels, track_stats, pieces)
        else:
            self.conv = PieceConv(piece_channels, pieces, out_channels)
            self.bn = batch_norm(out_channels, track_stats)

    def forward(self, x: torch.Tensor, which: Sequence[int]) -> torch.Tensor:
        return self.fr(x, which) if self.reduce else self.bn(self.conv(x, which))


class Classifier(nn.Module):
    """Global average pooling, dropout (keep probability ``keep``), linear layer over the pieces."""

    def __init__(self, piece_channels: int, pieces: Sequence[int], num_classes: int, keep: float):
        super().__init__()
        self.dropout = nn.Dropout(1.0 - keep)
        self.fc = PieceConv(piece_channels, pieces, num_classes, bias=True)

    def forward(self, x: torch.Tensor, which: Sequence[int]) -> torch.Tensor:
        return self.fc(self.dropout(F.adaptive_avg_pool2d(x, 1)), which).flatten(1)


class AuxHead(nn.Module):
    """Auxiliary classifier on the output of the second reduction cell (reference §5.1, §5.3; NASNet, ref-PT):
    (ReLU,) 5x5 average pool, 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, BN, ReLU, linear. The pool's stride
    (3 on CIFAR's 8x8 map, 2 on ImageNet's 7x7) leaves the 2x2 map the second conv reads."""

    relu_first = True

    def __init__(self, piece_channels: int, pieces: Sequence[int], num_classes: int, track_stats: bool,
                 pool_stride: int = 3):
        super().__init__()
        self.pool_stride = pool_stride
        self.conv1 = PieceConv(piece_channels, pieces, AUX_HIDDEN)
        self.bn1 = batch_norm(AUX_HIDDEN, track_stats)
        self.conv2 = nn.Conv2d(AUX_HIDDEN, AUX_FEATURES, 2, bias=False)
        self.bn2 = batch_norm(AUX_FEATURES, track_stats)
        self.fc = nn.Linear(AUX_FEATURES, num_classes)

    def forward(self, x: torch.Tensor, which: Sequence[int]) -> torch.Tensor:
        x = F.avg_pool2d(x, 5, self.pool_stride, count_include_pad=False)
        x = F.relu(self.bn1(self.conv1(x, which)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(1))


class CifarStem(nn.Sequential):
    """3x3 conv to ``channels``, BN (reference §5.1); returns its ReLU'd output twice: both inputs of the first
    cell (every reader of a cell input starts with a ReLU, so it is computed once)."""

    def __init__(self, channels: int, track_stats: bool):
        super().__init__(nn.Conv2d(3, channels, 3, padding=1, bias=False), batch_norm(channels, track_stats))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = F.relu(super().forward(x))
        return r, r


class ImageNetStem(nn.Module):
    """The ImageNet stem of ref-PT (reference §5.3): 3x3 stride-2 conv to C/2, BN, ReLU, 3x3 stride-2 conv to C,
    BN (``stem0``, 1/4 of the input size), then ReLU, 3x3 stride-2 conv, BN (``stem1``, 1/8). Returns both
    outputs ReLU'd: the first cell reads them as its inputs 0 and 1 (input 0 at twice the size)."""

    def __init__(self, channels: int, track_stats: bool):
        super().__init__()
        half = channels // 2
        self.stem0 = nn.Sequential(nn.Conv2d(3, half, 3, 2, 1, bias=False), batch_norm(half, track_stats),
                                   nn.ReLU(inplace=True), nn.Conv2d(half, channels, 3, 2, 1, bias=False),
                                   batch_norm(channels, track_stats))
        self.stem1 = nn.Sequential(nn.Conv2d(channels, channels, 3, 2, 1, bias=False),
                                   batch_norm(channels, track_stats))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r0 = F.relu(self.stem0(x))
        return r0, F.relu(self.stem1(r0))


# -- scheduled drop-path ---------------------------------------------------------------------------------------

def drop_path_keep(final_keep: float, cell_index: int, num_cells: int, progress: float) -> float:
    """Keep probability of a branch in cell ``cell_index`` (0-based) of ``num_cells`` at training
    ``progress`` in [0, 1]: falls linearly in depth and in progress from 1 to ``final_keep`` at the last
    cell at the end of training (reference §5.1; NASNet's ScheduledDropPath, ref-PT's ``apply_drop_path``)."""
    return 1.0 - (cell_index + 1) / num_cells * progress * (1.0 - final_keep)


def drop_path_mask(x: torch.Tensor, keep: float) -> torch.Tensor | None:
    """Per-sample factors (N, 1, 1, 1) for a branch ``x``: 0 (the whole sample dropped) with probability
    1 - keep, else 1/keep; None when nothing is dropped (keep >= 1)."""
    if keep >= 1.0:
        return None
    return torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep).div_(keep)


def init_parameters(module: nn.Module) -> None:
    """Kaiming-normal initialisation of every conv / linear weight (ref-PT's ``init_parameters``); meta
    tensors (a network built on the meta device only to be measured) hold no values to initialise."""
    for p in module.parameters():
        if p.dim() >= 2 and not p.is_meta:
            nn.init.kaiming_normal_(p)
