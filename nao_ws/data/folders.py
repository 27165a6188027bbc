"""ImageNet as an ImageFolder layout (reference §5.3): ``train/`` and ``val/``, each one folder of images per class,
the same classes in both, under the data folder's ``imagenet/`` (or the folder given itself). torchvision finds and
decodes the images; nao-ws checks the layout first, each problem one line.

Batches are decoded and augmented by DataLoader worker processes and arrive as uint8 tensors: pinned, copied
without waiting, normalised on the device (a quarter of the bytes of float images on the way). Augmentation is
ref-PT's: a random resized crop, a horizontal flip and colour jitter (reference §5.3); the test images are resized
to ``image_size / 0.875`` and centre-cropped. The order is one seeded permutation per epoch, split into global
batches exactly as ``batches.ImageBatches`` splits CIFAR's, and each image's augmentation draws come from a
generator seeded by (seed, epoch, image): batches do not depend on the number of worker or training processes,
and a resumed run sees the images and crops an uninterrupted one would.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import NaoWsError
from .batches import epoch_seed, eval_share, process_share
from .tasks import data_root, one_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # reference §5.3 (ref-PT, torchvision's ImageNet statistics)
IMAGENET_STD = (0.229, 0.224, 0.225)  # reference §5.3
COLOR_JITTER = (0.4, 0.4, 0.4, 0.2)  # brightness, contrast, saturation, hue (reference §5.3, ref-PT)
CROP_FRACTION = 0.875  # test images: resized to side / 0.875 (256 for 224), centre crop (reference §5.3)
SPLITS = ("train", "val")
FOLDER = "imagenet"


@dataclass
class FolderSet:
    samples: list  # (path, class index)

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class FolderData:
    train: FolderSet
    valid: FolderSet  # ImageNet's val/, the test split of the papers
    num_classes: int
    mean: tuple
    std: tuple
    name: str


def folder_root(data_dir) -> Path:
    """``<data dir>/imagenet``, or the data dir itself when it holds the splits."""
    root = data_root(data_dir)
    return root if any((root / s).is_dir() for s in SPLITS) else root / FOLDER


def _classes(split: Path) -> list[str]:
    if not split.is_dir():
        what = "is a file" if split.exists() else "is missing"
        raise NaoWsError(f"{split} {what}: an ImageFolder needs {' and '.join(s + '/' for s in SPLITS)} in "
                         f"{split.parent}, each holding one folder of images per class")
    try:
        classes = sorted(e.name for e in os.scandir(split) if e.is_dir())
    except OSError as e:
        raise NaoWsError(f"{split} cannot be read ({e.strerror}): check its permissions") from None
    if not classes:
        raise NaoWsError(f"{split} holds no class folders: put each class's images in a folder of its own")
    return classes


def _samples(split: Path, classes: list[str]) -> list:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    index = {c: i for i, c in enumerate(classes)}
    try:
        return make_dataset(str(split), index, extensions=IMG_EXTENSIONS, allow_empty=True)
    except OSError as e:
        raise NaoWsError(f"{split} cannot be read ({e.strerror}): check its permissions") from None


def load_folders(task: str, data_dir=None) -> FolderData:
    """The file lists of both splits, checked: the splits exist, have the same class folders and every class
    folder holds images. The images themselves are read while training; an unreadable one stops the run with
    its path."""
    root = folder_root(data_dir)
    if not root.is_dir():
        raise NaoWsError(f"ImageNet not found: expected {' and '.join(s + '/' for s in SPLITS)} in {root}; it "
                         "cannot be downloaded by nao-ws (its licence asks for registration at image-net.org): "
                         "put it there, or pass --data-dir")
    train, val = (root / s for s in SPLITS)
    classes = _classes(train)
    other = _classes(val)
    if classes != other:
        only_train, only_val = sorted(set(classes) - set(other)), sorted(set(other) - set(classes))
        if only_train:
            which = f"{train} has {only_train[0]}, {val} has not"
        else:
            which = f"{val} has {only_val[0]}, {train} has not"
        raise NaoWsError(f"the splits hold different classes ({len(only_train) + len(only_val)} differ, e.g. "
                         f"{which}): train/ and val/ need the same class folders")
    sets = []
    for split in (train, val):
        samples = _samples(split, classes)
        empty = sorted(set(range(len(classes))) - {label for _, label in samples})
        if empty:
            raise NaoWsError(f"{split / classes[empty[0]]} holds no image files (.jpg, .png, ...): every class "
                             "folder needs images")
        sets.append(FolderSet(samples))
    return FolderData(sets[0], sets[1], len(classes), IMAGENET_MEAN, IMAGENET_STD, task)


# -- reading and augmenting in worker processes --------------------------------------------------------------

@dataclass(frozen=True)
class Unreadable:
    """What a worker returns for an image it cannot decode: the training process turns it into the run's error."""

    path: str
    reason: str


class _Images(torch.utils.data.Dataset):
    """``dataset[(epoch, i)]`` (training: augmented with draws seeded by (seed, epoch, i)) or ``dataset[i]``
    (test: resized and centre-cropped) -> (uint8 CHW image, label), or an :class:`Unreadable`."""

    def __init__(self, samples: list, image_size: int, train: bool, seed: int):
        from torchvision.transforms import v2

        self.samples, self.seed = samples, seed
        if train:
            steps = [v2.RandomResizedCrop(image_size), v2.RandomHorizontalFlip(), v2.ColorJitter(*COLOR_JITTER)]
        else:
            steps = [v2.Resize(round(image_size / CROP_FRACTION)), v2.CenterCrop(image_size)]
        self.transform = v2.Compose([*steps, v2.PILToTensor()])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        from PIL.Image import DecompressionBombError
        from torchvision.datasets.folder import pil_loader

        epoch, i = key if isinstance(key, tuple) else (None, key)
        path, label = self.samples[i]
        try:
            image = pil_loader(path)
            if epoch is None:
                return self.transform(image), label
            with torch.random.fork_rng(devices=()):
                torch.manual_seed(epoch_seed(self.seed, epoch, i))
                return self.transform(image), label
        except (OSError, ValueError, DecompressionBombError) as e:  # missing, truncated, not an image, too large
            return Unreadable(path, one_line(e))


def _collate(items: list):
    """Stack a batch, or hand on the first unreadable image."""
    bad = next((item for item in items if isinstance(item, Unreadable)), None)
    if bad is not None:
        return bad
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


class _Transfer:
    """uint8 batches from the loader -> normalised float batches on the device (channels-last on request)."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool):
        self.device, self.channels_last = device, channels_last
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255

    def __call__(self, batch):
        if isinstance(batch, Unreadable):
            raise NaoWsError(f"{batch.path}: unreadable image ({batch.reason}); delete or replace it")
        x, y = batch
        x = (x.to(self.device, non_blocking=True).float() - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)


def _loader(dataset, batch_sampler, workers: int, device: torch.device, persistent: bool):
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                                       collate_fn=_collate, pin_memory=device.type == "cuda",
                                       persistent_workers=persistent and workers > 0,
                                       prefetch_factor=4 if workers else None)


class _EpochKeys:
    """The DataLoader's batch sampler: the keys of a ``FolderBatches``' remaining batches of its epoch."""

    def __init__(self, batches: "FolderBatches"):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        b = self.batches
        order = torch.randperm(b.n, generator=torch.Generator().manual_seed(epoch_seed(b.seed, b.epoch)))
        for k in range(b.position, len(b)):
            start = k * b.batch_size
            yield [(b.epoch, int(i)) for i in order[start + b.share.start:start + b.share.stop]]


class FolderBatches:
    """Training batches of an ImageFolder, with the interface and the state of ``batches.ImageBatches``: one
    seeded permutation per epoch cut into global batches of ``batch_size`` (the last partial one dropped),
    of which this process (``rank`` of ``world``) loads its ``process_share``."""

    def __init__(self, data: FolderSet, batch_size: int, mean, std, *, image_size: int, workers: int,
                 device: torch.device, channels_last: bool, generator_seed: int, rank: int = 0, world: int = 1):
        if not 0 < batch_size <= len(data):
            raise NaoWsError(f"batch size {batch_size} does not fit {len(data)} images; use a batch size from 1 to "
                             f"{len(data)}")
        self.batch_size, self.seed, self.n = batch_size, generator_seed, len(data)
        self.share = process_share(batch_size, rank, world)
        self.epoch = 0
        self.position = 0  # batches of the current epoch already handed out
        self._transfer = _Transfer(mean, std, device, channels_last)
        images = _Images(data.samples, image_size, True, generator_seed)
        self._loader = _loader(images, _EpochKeys(self), workers, device, persistent=True)

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self):
        """The rest of the current epoch as (images, labels) on the device; then the next epoch begins."""
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        for batch in self._loader:
            self.position += 1
            yield self._transfer(batch)
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position, "num_images": self.n,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        saved = (state["num_images"], state["batch_size"])
        if saved != (self.n, self.batch_size):
            raise NaoWsError(f"the checkpoint's data iterator was for {saved[0]} images in batches of {saved[1]}, "
                             f"this run has {self.n} in batches of {self.batch_size}; resume with the same data "
                             "and batch size")
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]


def folder_test_batches(data: FolderSet, batch_size: int, mean, std, *, image_size: int, workers: int,
                        device: torch.device, channels_last: bool, rank: int = 0, world: int = 1):
    """This process's ``eval_share`` of the test images, in order, as (images, labels) batches on the device."""
    share = eval_share(len(data), rank, world)
    keys = list(range(share.start, share.stop))
    sampler = [keys[i:i + batch_size] for i in range(0, len(keys), batch_size)]
    transfer = _Transfer(mean, std, device, channels_last)
    workers = min(workers, math.ceil(len(keys) / batch_size))
    loader = _loader(_Images(data.samples, image_size, False, 0), sampler, workers, device, persistent=False)
    return (transfer(batch) for batch in loader)
