"""The final (standalone) CNN built from one ``cnn-ws`` or ``cnn`` architecture, for CIFAR (reference §5.1) or,
with the ImageNet stem, for ImageNet (reference §5.3), and its size: parameters and multiply-adds.

It is ``cnn.CellNetwork`` with modules for its architecture's ops only and BNs that keep running
statistics: stem conv 3x3 to 3F + BN; cells whose output is the plain concatenation of their loose ends;
1x1 ReLU-conv-BN input calibration (a factorized reduce for the input from before a reduction cell);
factorized reduce on loose cell inputs of reduction cells; auxiliary head after the second reduction;
dropout before the classifier; scheduled drop-path. NAONet-A at N = 6, F = 128 has the paper's 144.6M
parameters with this construction (auxiliary head excluded).

One difference from ref-PT's ``MaybeCalibrateSize``: an input is calibrated even when it already has the
cell's channel count (a previous cell with a single loose end), as in the supernet. The published cells
never have a single loose end, so their sizes are unaffected.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import ops
from .cnn import CellNetwork, Supernet, cell_choices, head_options
from .spaces import CnnArch, SpaceError, get_space

# reference §5.1 reference cells (text form of reference §7)
NAONET_A = "0 2 1 10 2 3 1 2 0 1 1 2 0 3 4 2 1 0 0 2 | 0 2 1 8 0 1 0 9 0 4 1 5 0 9 2 1 1 6 0 2"  # cnn space
NAONET_B = "0 1 0 2 0 1 2 2 1 3 0 2 4 0 1 3 2 1 0 3 | 1 1 1 0 2 1 2 4 1 0 2 3 3 1 2 2 0 2 0 2"  # cnn-ws space
REFERENCE_CELLS = {"cnn": NAONET_A, "cnn-ws": NAONET_B}


class NASNetwork(CellNetwork):
    """Final network of ``arch``: ``forward(x, progress)`` -> ``(logits, aux_logits)``. Without keywords: CIFAR's
    stem, no aux head, no dropout, no drop-path; ``from_recipe`` sets them from a recipe."""

    def __init__(self, arch: CnnArch, layers: int, channels: int, num_classes: int = 10, *, aux: bool = False,
                 drop_path_keep: float = 1.0, head_keep: float = 1.0, stem: str = "cifar"):
        if not isinstance(arch, CnnArch):
            raise SpaceError(f"a CNN needs a cnn-ws or cnn architecture, got {getattr(arch, 'space', arch)}")
        space = get_space(arch.space)
        space.validate(arch)
        normal = cell_choices(arch.normal, space.ops, space.loose_ends(arch.normal))
        reduce = cell_choices(arch.reduce, space.ops, space.loose_ends(arch.reduce))
        super().__init__(arch.space, layers, channels, num_classes, normal, reduce, aux=aux,
                         drop_path_keep=drop_path_keep, head_keep=head_keep, track_stats=True, stem=stem)
        self.arch = arch

    def forward(self, x: torch.Tensor, progress: float = 1.0):
        return super().forward(x, self.arch, progress)

    @classmethod
    def from_recipe(cls, arch: CnnArch, recipe, num_classes: int, stem: str = "cifar") -> "NASNetwork":
        """The network of ``arch`` that ``recipe`` trains (``recipes.CnnFinal``): its N, F, heads and drop-path."""
        return cls(arch, recipe.layers, recipe.channels, num_classes, stem=stem, **head_options(recipe))

    @classmethod
    def from_supernet(cls, supernet: Supernet, arch: CnnArch, **kwargs) -> "NASNetwork":
        """The final network of ``arch`` with the supernet's sizes and a copy of the weights the supernet
        uses for ``arch`` (BN running statistics start fresh: the supernet keeps none)."""
        net = cls(arch, supernet.layers, supernet.channels, supernet.num_classes,
                  aux=supernet.aux_head is not None, **kwargs).to(next(supernet.parameters()).device)
        return ops.inherit_weights(net, supernet)


def parameter_count(model: nn.Module, aux: bool = False) -> int:
    """Number of parameters, the auxiliary head's only when ``aux`` (reference §5.1 counts exclude it)."""
    return sum(p.numel() for name, p in model.named_parameters() if aux or not name.startswith("aux_head."))


def multiply_adds(model: nn.Module, image_size: int) -> int:
    """Multiply-adds of one ``image_size`` x ``image_size`` image through ``model`` in inference (no aux head):
    every convolution and the classifier, as the mobile setting counts them (reference §5.3); pooling, BN and
    sums are not counted. A factorized reduce counts as its two 1x1 convolutions (it runs as one 2x2
    convolution whose kernel is half zeros). Works on a model built on the meta device."""
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        per_output = inputs[0].shape[1]  # a 1x1 conv over the input's channels: PieceConv, FactorizedReduce
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            per_output = module.in_features
        total += output[0].numel() * per_output

    kinds = (nn.Conv2d, nn.Linear, ops.PieceConv, ops.FactorizedReduce)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    param = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total
