"""Data-parallel final training: one process per device, started by torchrun (or by ``nao-ws train --nproc N``,
which runs torchrun's launcher), joined by PyTorch's process group and DistributedDataParallel.

:class:`Processes` is all a training loop knows of the others: its share of each global batch, the mean or sum
of a tensor over them, objects from rank 0 and from everyone, and the network wrapped for DDP. With one process
(``SINGLE``) every method is the identity, so the loops are written once and run alike either way.

Process group: NCCL for CUDA tensors, gloo for CPU tensors (and for the small objects sent between the
processes); a collective that waits longer than ``--dist-timeout`` raises (gloo) or aborts its process (NCCL),
and torchrun stops every other process of a job one of whose processes ended with an error.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from ..data.batches import epoch_seed
from ..errors import USER_ERRORS, NaoWsError


class _Total(torch.autograd.Function):
    """The sum of a tensor over the processes, whose gradient is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _Total.apply(grad)


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """``nn.SyncBatchNorm`` for CPU tensors (PyTorch's runs on GPUs only): in training, the batch's mean and
    variance over every process's images, through all-reduces that carry gradients back; running statistics
    as ``nn.BatchNorm2d`` updates them from the whole batch. Same parameters and buffers as the BN it replaces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        dims = (0, 2, 3)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype)
        sums = _Total.apply(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.view(1, -1, 1, 1)
        var = _Total.apply(centred.pow(2).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1), momentum)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1) if self.affine else y


def _cpu_sync_bn(module: nn.Module) -> None:
    """Replace every ``nn.BatchNorm2d`` below ``module`` by a :class:`CpuSyncBatchNorm` holding its tensors."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = CpuSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats, device="meta")
            for key, value in {**dict(child.named_parameters(recurse=False)),
                               **dict(child.named_buffers(recurse=False))}.items():
                setattr(sync, key, value)
            setattr(module, name, sync)
        else:
            _cpu_sync_bn(child)


@dataclass(frozen=True)
class Processes:
    """This process's place among the ``world`` processes of a data-parallel training (ranks 0..world-1;
    ``local_rank``: its place on its own node, which picks its GPU). Rank 0 is the one that writes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """The device this process trains on: with several processes, ``cuda`` is the GPU of its local rank."""
        if self.world == 1 or device.type != "cuda":
            return device
        if device.index is not None:
            raise NaoWsError(f"--device {device} names one GPU, but each of the {self.world} processes takes the GPU "
                             "of its local rank: use --device cuda")
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise NaoWsError(f"process {self.local_rank} of this node has no GPU of its own (the node has {count}): "
                             f"start at most {count} processes per node")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def seed(self, seed: int, step: int = 0) -> None:
        """Give this process a random stream of its own (dropout, drop-path), from ``seed`` and ``step``; one
        process keeps its stream as it is."""
        if self.world > 1:
            torch.manual_seed(epoch_seed(seed, step, self.rank))

    def wrap(self, model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
        """``model`` for training: itself with one process; else under DistributedDataParallel (gradients
        averaged over the processes), its BNs first made synchronous if ``sync_bn``. ``model`` keeps its own
        parameters: checkpoints and evaluation use it directly."""
        if self.world == 1:
            return model
        if sync_bn and device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the BNs below the (non-BN) root in place
        elif sync_bn:
            _cpu_sync_bn(model)
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)

    def total(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of ``t`` over the processes (a new tensor)."""
        if self.world == 1:
            return t
        t = t.clone()
        dist.all_reduce(t)
        return t

    def average(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of ``t`` over the processes."""
        return t if self.world == 1 else self.total(t) / self.world

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every process."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
        return box[0]

    def gather(self, obj) -> list:
        """Every process's ``obj``, in rank order, on every process."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Every process's ``t`` (equal shapes) stacked along dim 0 in rank order."""
        if self.world == 1:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def agree(self, check):
        """Run ``check()`` on every process; a user error on any of them is raised on all (naming the first
        failing rank), so that no process goes on to create or train anything alone."""
        if self.world == 1:
            return check()
        try:
            result, problem = check(), None
        except USER_ERRORS as e:
            result, problem = None, " ".join(str(e).split())
        problems = [(r, p) for r, p in enumerate(self.gather(problem)) if p is not None]
        if problems:
            rank, first = problems[0]
            raise NaoWsError(first if len(problems) == self.world else f"rank {rank}: {first}")
        return result

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = Processes()


def start(timeout_s: float) -> Processes:
    """The processes of this training: joined into one process group when torchrun started several (it sets
    WORLD_SIZE, RANK and LOCAL_RANK), else the single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SINGLE
    if not dist.is_available():
        raise NaoWsError("this PyTorch build has no torch.distributed: install one that has, or run one process")
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

