"""Zero-cost proxies: a score of an untrained network from one minibatch, higher is better (reference §10).
The baselines a weight-sharing supernet must beat at ranking architectures, at seconds per architecture.

  * ``params``: trainable parameters; ``flops``: multiply-adds of one 32x32 image (convolutions and linear);
  * ``synflow`` (Tanaka et al. 2020): sum of |theta| x dR/dtheta over the weights, R = the sum of the outputs
    of the network with every parameter made positive, BN an identity, on an all-ones input, in float64;
  * ``snip`` (Lee et al. 2019): sum of |theta x dL/dtheta| over the weights, L the minibatch's cross-entropy;
  * ``grad_norm``: sum over the weight tensors of the L2 norm of dL/dtheta;
  * ``naswot`` (Mellor et al. 2021): log |det K|, K[i, j] = the number of ReLU units on which images i and j
    agree (both active or both inactive);
  * ``jacob_cov`` (Mellor et al. 2020, v1): minus sum(log(lambda + k) + 1 / (lambda + k)) over the eigenvalues
    of the correlation matrix of the input Jacobians of the minibatch's images, k = 1e-5.

"The weights" are those of the convolutions and linear layers, as Abdelfattah et al. (2021) compute them.
Every architecture's network is built from the same seed and scored on the same minibatch; one network serves
every proxy asked for, and one forward pass of the minibatch four of them (``synflow``, which changes the
weights, runs last).
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import NaoWsError
from .sources.options import PROXIES

JACOB_K = 1e-5  # Mellor et al. 2020's k
IMAGE_SPACES = ("nb201", "cnn-ws", "cnn")


def parse_proxies(text: str) -> list[str]:
    """``all`` (``PROXIES``) or comma-separated names -> the proxies, in the order named."""
    names = PROXIES if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROXIES]
    if unknown or not names:
        raise NaoWsError(f"--proxy {text}: unknown proxy '{(unknown or [''])[0]}'; choose from {', '.join(PROXIES)} "
                         "or all")
    return list(dict.fromkeys(names))


def minibatch(images, batch: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The proxies' one minibatch: ``batch`` training images of ``images`` drawn with ``seed``, normalised, on
    ``device``. ``nao-ws score --proxy`` and the proxy score source draw it alike, so their scores agree."""
    from ..data.batches import fixed_batches
    from ..data.images import ImageSet

    train = images.train
    if batch > len(train):
        raise NaoWsError(f"--proxy-batch {batch} exceeds the {len(train)} training images: use at most {len(train)}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:batch]
    return fixed_batches(ImageSet(train.x[order], train.y[order]), batch, images.mean, images.std, device)[0]


def mean_rank(*scores: Sequence[float]) -> np.ndarray:
    """The mean of the rankings (1 = lowest, ties averaged) by several scores of the same cells, higher better;
    -inf (a proxy undefined for a cell) ranks last."""
    from scipy.stats import rankdata

    return np.mean([rankdata(np.asarray(s, float)) for s in scores], axis=0)


def network(arch, num_classes: int) -> nn.Module:
    """The network a proxy scores: NAS-Bench-201's at the benchmark's sizes (C = 16, N = 5, reference §8); a
    cnn-ws cell at the supernet's (N = 2, F = 20, reference §3.1); a cnn cell at a standalone candidate's
    (N = 3, F = 32, reference §4)."""
    from supernet import nb201, nets

    if arch.space == "nb201":
        return nb201.Nb201Network(arch, 5, 16, num_classes)
    if arch.space not in IMAGE_SPACES:
        raise NaoWsError(f"zero-cost proxies score image cells ({', '.join(IMAGE_SPACES)}), not {arch.space} cells")
    layers, channels = (2, 20) if arch.space == "cnn-ws" else (3, 32)
    return nets.NASNetwork(arch, layers, channels, num_classes)


def _weights(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def params(net, x, y) -> float:
    return float(sum(p.numel() for p in net.parameters() if p.requires_grad))


def flops(net, x, y) -> float:
    """Multiply-adds of one image through the convolutions and linear layers (forward hooks)."""
    total = [0]

    def count(module, inputs, out):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += out[0].numel() * k
        else:
            total[0] += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            net(x[:1])
    finally:
        for h in hooks:
            h.remove()
    return float(total[0])


@contextlib.contextmanager
def _relu_codes(kernel: torch.Tensor | None):
    """Within the block every ReLU (module or functional) adds its binary code to ``kernel`` [N, N] (None: off)."""
    real = F.relu

    def relu(input, inplace=False):
        out = real(input, inplace=inplace)
        c = (out.detach() > 0).flatten(1).double()
        kernel.add_(c @ c.T + (1 - c) @ (1 - c).T)
        return out

    if kernel is not None:
        F.relu = relu
    try:
        yield
    finally:
        F.relu = real


def one_pass(net, x, y, names) -> dict:
    """snip, grad_norm, naswot and jacob_cov from one forward pass of the minibatch: the loss's gradient gives
    the first two, the ReLU codes the third, the outputs' gradient with respect to the input the fourth."""
    wanted = [n for n in ("snip", "grad_norm", "naswot", "jacob_cov") if n in names]
    if not wanted:
        return {}
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device) if "naswot" in wanted else None
    x = x.clone().requires_grad_("jacob_cov" in wanted)
    with _relu_codes(kernel):
        logits = net(x)[0]
    out = {}
    if "snip" in wanted or "grad_norm" in wanted:
        weights = _weights(net)
        grads = torch.autograd.grad(F.cross_entropy(logits, y), weights, retain_graph="jacob_cov" in wanted,
                                    allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]
        with torch.no_grad():
            out["snip"] = float(sum((w * g).abs().sum() for w, g in zip(weights, grads)))
            out["grad_norm"] = float(sum(g.norm() for g in grads))
    if kernel is not None:
        out["naswot"] = float(torch.linalg.slogdet(kernel.cpu())[1])
    if "jacob_cov" in wanted:  # an output that ignores its input (no path from it) ranks last: -inf
        jac = torch.autograd.grad(logits.sum(), x, allow_unused=True)[0]
        out["jacob_cov"] = -math.inf if jac is None or not bool(jac.any()) else _jacob_cov(jac)
    return {k: v for k, v in out.items() if k in wanted}


def _jacob_cov(jac: torch.Tensor) -> float:
    corr = np.corrcoef(jac.flatten(1).double().cpu().numpy())
    if not np.isfinite(corr).all():  # an image whose Jacobian is constant: no correlation defined
        return -math.inf
    eig = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(eig + JACOB_K) + 1.0 / (eig + JACOB_K)))


def synflow(net, x, y) -> float:
    """On the network itself: its parameters become their absolute values and its BNs identities."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
                m.eps = 0.0
                if m.running_mean is None:
                    m.track_running_stats = True
                m.running_mean = torch.zeros(m.num_features, device=x.device)
                m.running_var = torch.ones(m.num_features, device=x.device)
        net.double()
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    net(torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device))[0].sum().backward()
    with torch.no_grad():
        return float(sum((w * w.grad).sum() for w in _weights(net) if w.grad is not None))


def score(arch, names: Sequence[str], x: torch.Tensor, y: torch.Tensor, num_classes: int, seed: int) -> dict:
    """{proxy: value} of ``arch``'s network, built from ``seed``, in training mode (BN on batch statistics),
    on the minibatch ``(x, y)``; a value that is not finite becomes -inf (ranked last)."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        net = network(arch, num_classes).to(x.device).train()
    out = {"params": params(net, x, y)} if "params" in names else {}
    if "flops" in names:
        out["flops"] = flops(net, x, y)
    out.update(one_pass(net, x, y, names))
    if "synflow" in names:  # last: it changes the network
        out["synflow"] = synflow(net, x, y)
    return {name: out[name] if math.isfinite(out[name]) else -math.inf for name in names}
