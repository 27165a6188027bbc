"""SGD updates that skip themselves on the device when a step's loss or gradient is not finite, so that a
training step never waits for the GPU to find out.

PyTorch's fused SGD takes a ``found_inf`` tensor (as under a ``GradScaler``): its one kernel leaves the
parameters and momentum buffers alone when it is 1. Any other optimiser falls back to deciding on the host.
"""
from __future__ import annotations

from typing import Iterable

import torch

from .variants import UNSAMPLED


def sgd(params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
        nesterov: bool = False) -> torch.optim.SGD:
    """Fused SGD: one kernel per update, skippable on the device (`step_if_finite`)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                           fused=True)


def zero_grads(optimizer: torch.optim.Optimizer, unsampled: str) -> None:
    """Before a supernet step. ``skip``: drop every gradient, so weights off the sampled path get none and
    the update leaves them alone, weight decay and momentum included. ``decay``: every parameter holds a
    zero gradient, so the update reaches them all: weight decay and momentum on every weight at every step,
    as in both reference code bases (reference §3.1). The zeroed gradients stay allocated between steps."""
    if unsampled not in UNSAMPLED:
        raise ValueError(f"unsampled must be one of {UNSAMPLED}, got {unsampled!r}")
    optimizer.zero_grad(set_to_none=unsampled == "skip")
    if unsampled == "decay":
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)


def _momentum_buffers(optimizer: torch.optim.Optimizer) -> None:
    """Zero momentum buffers for parameters about to get their first update: fused SGD would otherwise
    create them uninitialised on a skipped first step, and it needs all of a step's buffers or none."""
    for group in optimizer.param_groups:
        if group.get("momentum", 0) == 0:
            continue
        for p in group["params"]:
            if p.grad is not None and optimizer.state[p].get("momentum_buffer") is None:
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)


def step_if_finite(optimizer: torch.optim.Optimizer, finite: torch.Tensor, keep_grads: bool = False) -> None:
    """``optimizer.step()`` where ``finite`` (a bool tensor) holds, then drop every gradient (zero them
    with ``keep_grads``, see `zero_grads`).

    Parameters without a gradient are left alone either way (weight decay and momentum included)."""
    if all(group.get("fused") for group in optimizer.param_groups):
        _momentum_buffers(optimizer)
        optimizer.found_inf = (~finite).float()
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif finite:  # a host sync: only optimisers built without `sgd`
        optimizer.step()
    optimizer.zero_grad(set_to_none=not keep_grads)


def host_values(*tensors: torch.Tensor) -> list[float]:
    """The values of 0-dim tensors on the host, in one transfer."""
    return torch.stack([t.detach().float() for t in tensors]).tolist()
