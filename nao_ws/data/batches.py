"""Image batches for training and scoring, built on tensors on the training device (no PIL, no DataLoader):
augmented training batches (reference §3.1, §5.1) and fixed, plain batches that score every architecture alike."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import NaoWsError
from .images import ImageSet

PAD = 4  # random crop 32 from the image zero-padded to 40 (reference §3.1)


def _stats(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    def as_tensor(v):
        return torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return as_tensor(mean), as_tensor(std)


def _normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - mean) / std


def epoch_seed(seed: int, *keys: int) -> int:
    """Independent, well-mixed generator seed for each (seed, epoch) (or (seed, epoch, image))."""
    return int(np.random.SeedSequence([seed % 2**64, *keys]).generate_state(1, np.uint64)[0])


def process_share(batch_size: int, rank: int, world: int) -> slice:
    """The part of each global batch of ``batch_size`` that process ``rank`` of ``world`` trains on (data-parallel
    training): equal, consecutive parts, so the processes together see exactly the batch one process would."""
    if batch_size % world:
        raise NaoWsError(f"--batch-size {batch_size} is the global batch and must split evenly over the {world} "
                         f"processes: use a multiple of {world}")
    per = batch_size // world
    return slice(rank * per, (rank + 1) * per)


def eval_share(n: int, rank: int, world: int) -> slice:
    """Process ``rank``'s consecutive share of ``n`` evaluation images; the shares cover them all once."""
    return slice(n * rank // world, n * (rank + 1) // world)


class ImageBatches:
    """Seeded, resumable iterator of augmented, normalised float batches built on tensors (no PIL, no DataLoader).

    train=True: each epoch a fresh shuffle, a random 32x32 crop of the image zero-padded by 4 (reference §3.1),
    a random horizontal flip and, when cutout > 0, one cutout square of that side per image (reference §5.1),
    then normalisation by mean/std; cutout zeroes after normalisation, as in the NAO and DARTS code.
    train=False: the images in order, only normalised (cutout is ignored).
    Images are moved to `device` once and augmented there. All random draws of an epoch come from a CPU
    generator seeded by (generator_seed, epoch), so batches are identical on every device and the state
    is just (epoch, position): iterating again after a break continues the same epoch, and
    `load_state_dict(state_dict())` resumes with the same remaining order and augmentation draws.
    Data-parallel (`world` processes): `batch_size` is the global batch; every process draws the same plan and
    yields its `process_share` of each batch, so the global batches, and the state, are those of one process.
    """

    def __init__(self, data: ImageSet, batch_size: int, mean, std, *, train: bool, cutout: int = 0,
                 device="cpu", generator_seed: int, drop_last: bool = True, rank: int = 0, world: int = 1):
        if batch_size < 1 or (drop_last and batch_size > len(data)) or len(data) == 0:
            raise NaoWsError(
                f"batch size {batch_size} does not fit {len(data)} images; use a batch size from 1 to {len(data)}"
            )
        self.device = torch.device(device)
        images = data.x.to(self.device)
        self._images = F.pad(images, (PAD, PAD, PAD, PAD)) if train else images
        self._labels = data.y.to(self.device)
        self._mean, self._std = _stats(mean, std, self.device)
        self.batch_size, self.train, self.drop_last = batch_size, train, drop_last
        self.share = process_share(batch_size, rank, world)
        self.cutout = cutout if train else 0
        self.seed = generator_seed
        self.epoch = 0
        self.position = 0  # batches of the current epoch already handed out

    def __len__(self) -> int:
        n = len(self._labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _epoch_plan(self) -> dict:
        """Per-sample draws of the current epoch: order, crop offsets, flips, cutout centres (on device)."""
        n = len(self._labels)
        if not self.train:
            return {"order": torch.arange(n, device=self.device)}
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        plan = {
            "order": torch.randperm(n, generator=g),
            "dy": torch.randint(0, 2 * PAD + 1, (n,), generator=g),
            "dx": torch.randint(0, 2 * PAD + 1, (n,), generator=g),
            "flip": torch.randint(0, 2, (n,), generator=g).bool(),
        }
        if self.cutout:
            plan["cy"] = torch.randint(0, 32, (n,), generator=g)
            plan["cx"] = torch.randint(0, 32, (n,), generator=g)
        return {k: v.to(self.device) for k, v in plan.items()}

    def _batch(self, p: dict):
        idx = p["order"]
        if self.train:
            # one gather: rows dy..dy+31, columns dx..dx+31 (read right to left when flipped)
            ar = torch.arange(32, device=self.device)
            rows = p["dy"][:, None] + ar
            cols = p["dx"][:, None] + torch.where(p["flip"][:, None], 31 - ar, ar)
            channels = torch.arange(3, device=self.device)
            x = self._images[
                idx[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]
            ]
        else:
            x = self._images[idx]
        x = _normalise(x, self._mean, self._std)
        if self.cutout:
            # the square [c - cutout//2, c + cutout//2) clipped to the image, as in DeVries & Taylor's code
            ar = torch.arange(32, device=self.device)
            half = self.cutout // 2
            in_rows = (ar >= p["cy"][:, None] - half) & (ar < p["cy"][:, None] + half)
            in_cols = (ar >= p["cx"][:, None] - half) & (ar < p["cx"][:, None] + half)
            x = x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)
        return x, self._labels[idx]

    def __iter__(self):
        if self.position >= len(self):  # the previous pass stopped right after its last batch
            self.epoch, self.position = self.epoch + 1, 0
        plan = self._epoch_plan()
        while self.position < len(self):
            start = self.position * self.batch_size
            part = slice(start + self.share.start, min(start + self.share.stop, len(self._labels)))
            self.position += 1
            yield self._batch({k: v[part] for k, v in plan.items()})
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "num_images": len(self._labels), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        saved = (state["num_images"], state["batch_size"])
        if saved != (len(self._labels), self.batch_size):
            raise NaoWsError(
                f"the checkpoint's data iterator was for {saved[0]} images in batches of {saved[1]}, this run has "
                f"{len(self._labels)} in batches of {self.batch_size}; resume with the same data and batch size"
            )
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]


def fixed_batches(data: ImageSet, batch_size: int, mean, std, device, limit: int | None = None, rank: int = 0,
                  world: int = 1) -> list:
    """The first `limit` images (all when None) in order, normalised, un-augmented, in batches on device;
    with `world` processes, process `rank`'s `eval_share` of them.

    The same tensors serve every architecture scored, so scores are comparable (reference §3.1).
    """
    n = len(data) if limit is None else min(limit, len(data))
    share = eval_share(n, rank, world)
    mean_t, std_t = _stats(mean, std, device)
    x, y = data.x[share].to(device), data.y[share].to(device)
    return [(_normalise(x[i:i + batch_size], mean_t, std_t), y[i:i + batch_size]) for i in range(0, len(y), batch_size)]
