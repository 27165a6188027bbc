"""CIFAR-10/100, the bundled CIFAR-10 sample and npz files of images (reference §3.1, §5.1), as uint8 NCHW tensors.

CIFAR is read from the extracted official archive with structural checks (keys, dtype, shape, label range)
instead of torchvision's per-file MD5 check: that check rejects every file but the official ones (so no test
fixture or user subset could load), re-hashes 180 MB on each start, and reports any problem as the same
multi-cause RuntimeError. The pickles are read by `_CifarUnpickler`, which admits only what a CIFAR batch
holds, so a crafted file in a data folder cannot run code. Every problem a user can cause (missing,
truncated or malformed files) raises `NaoWsError` with a one-line message naming the file and the fix.
"""
from __future__ import annotations

import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import NaoWsError
from .tasks import IMAGE_TASKS, check_task, data_root, get_it, one_line

# Per-channel mean/std of the 50k training pixels in [0, 1]. CIFAR-10: the values of the NAO and DARTS
# PyTorch code (utils.py). CIFAR-100: computed the same way (as in weiaicunzai/pytorch-cifar100).
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)

SPLIT_SEED = 0  # fixed, so the train/dev split never depends on a run's --seed (reference §3.1)
NPZ_DEV_SIZE = 500  # an npz given by path holds out its last 500 images (cifar10-train4000: 3500 / 500)
SAMPLE_NPZ = Path(__file__).parent / "assets" / "cifar10-sample.npz"


EOS, UNK = "<eos>", "<unk>"


@dataclass(frozen=True)
class ImageSource:
    title: str
    num_classes: int
    mean: tuple
    std: tuple
    dev_size: int  # images held out of the training split as the search's dev set
    label_key: str  # key of the labels in the official pickles


IMAGE_SOURCES = {
    # reference §3.1: 45k / 5k
    "cifar10": ImageSource("CIFAR-10", 10, CIFAR10_MEAN, CIFAR10_STD, 5000, "labels"),
    "cifar100": ImageSource("CIFAR-100", 100, CIFAR100_MEAN, CIFAR100_STD, 5000, "fine_labels"),
    # 450 / 50: the same 10% as reference §3.1, 5 images of each class
    "cifar10-sample": ImageSource("CIFAR-10 sample", 10, CIFAR10_MEAN, CIFAR10_STD, 50, "labels"),
}


@dataclass
class ImageSet:
    x: torch.Tensor  # uint8 [N, 3, 32, 32] (NCHW)
    y: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class ImageData:
    train: ImageSet
    valid: ImageSet
    num_classes: int
    mean: tuple
    std: tuple
    name: str


def _checked_arrays(path: Path, x, y, num_classes: int, x_shape: tuple):
    """Validate one split's images (uint8, shape (N, *x_shape)) and labels (N integers in range)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        raise NaoWsError(f"{path}: images must be a uint8 array, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.shape[1:] != x_shape or len(x) == 0:
        expected = ", ".join(map(str, x_shape))
        raise NaoWsError(f"{path}: images have shape {x.shape}, expected (N, {expected}) with N > 0")
    y = np.asarray(y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise NaoWsError(f"{path}: labels have shape {y.shape} and dtype {y.dtype}, expected {len(x)} integers")
    if y.min() < 0 or y.max() >= num_classes:
        bad = y.min() if y.min() < 0 else y.max()
        raise NaoWsError(f"{path}: label {bad} out of range 0..{num_classes - 1}")
    return x, y.astype(np.int64)


def _image_set(x_nchw: np.ndarray, y: np.ndarray) -> ImageSet:
    return ImageSet(torch.from_numpy(np.ascontiguousarray(x_nchw)), torch.from_numpy(y))


def _read_npz(path: Path, num_classes: int):
    """(train, test or None) from an npz: `x`, `y` (NHWC, no test split) or `x_train`, `y_train`, `x_test`, `y_test`."""
    if not path.is_file():
        raise NaoWsError(f"{path}: file not found; pass the path of an existing .npz file")
    try:
        with np.load(path, allow_pickle=False) as z:
            twice = next((k for i, k in enumerate(z.files) if k in z.files[:i]), None)
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise NaoWsError(f"{path}: not a readable .npz file ({one_line(exc)})") from None
    if twice is not None:  # two zip members of one name: np.load would read the last
        raise NaoWsError(f"{path}: holds the array {twice} twice: write the file again with one")
    if {"x", "y"} <= arrays.keys() and {"x_train", "x_test"} & arrays.keys():
        raise NaoWsError(f"{path}: has both x, y and x_train, ... arrays: keep one of the two forms")
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        keys = (("x_train", "y_train"), ("x_test", "y_test"))
    elif {"x", "y"} <= arrays.keys():
        keys = (("x", "y"),)
    else:
        raise NaoWsError(f"{path}: has arrays {sorted(arrays)}, expected x, y or x_train, y_train, x_test, y_test")
    sets = []
    for kx, ky in keys:
        x, y = _checked_arrays(path, arrays[kx], arrays[ky], num_classes, (32, 32, 3))
        sets.append(_image_set(x.transpose(0, 3, 1, 2), y))
    return sets[0], (sets[1] if len(sets) == 2 else None)


def cifar_class(task: str):
    """torchvision's dataset class of ``task``, for its file names and checksums (imported on use: it takes a
    second to import, which every other run would pay for nothing)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    return CIFAR10 if task == "cifar10" else CIFAR100


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, str, bytes, numbers and NumPy arrays (what an official batch holds) and refuses
    every other global a pickle may name, such as the function a crafted file would have called."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               *((f"numpy.{core}.{mod}", name) for core in ("core", "_core")
                 for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                                   ("numeric", "_frombuffer")))}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR batch never does")
        return super().find_class(module, name)


def _read_cifar_batches(paths: list, task: str, root: Path) -> ImageSet:
    """Concatenate official pickled batches (`data` uint8 [n, 3072] in CHW order, labels under label_key)."""
    src = IMAGE_SOURCES[task]
    xs, ys = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                entry = _CifarUnpickler(f, encoding="latin1").load()
        except Exception as exc:  # unpickling a damaged file can fail with almost any exception type
            raise NaoWsError(
                f"{path}: unreadable {src.title} batch ({one_line(exc)}); delete it and {get_it(task, root)}"
            ) from None
        if not isinstance(entry, dict) or "data" not in entry or src.label_key not in entry:
            raise NaoWsError(f"{path}: not a {src.title} batch (expected a dict with 'data' and '{src.label_key}')")
        x, y = _checked_arrays(path, entry["data"], entry[src.label_key], src.num_classes, (3 * 32 * 32,))
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y)
    return _image_set(np.concatenate(xs), np.concatenate(ys))


def cifar_folder(task: str, root: Path) -> Path:
    """The extracted official archive: root/cifar-10-batches-py (cifar-100-python), or root when it is that folder."""
    base = cifar_class(task).base_folder
    return root if root.name == base else root / base


def _read_cifar(task: str, root: Path):
    """(train, test) from the extracted official archive."""
    cls = cifar_class(task)
    train_names = [name for name, _md5 in cls.train_list]
    test_names = [name for name, _md5 in cls.test_list]
    folder = cifar_folder(task, root)
    missing = [n for n in train_names + test_names if not (folder / n).is_file()]
    if missing:
        raise NaoWsError(
            f"{IMAGE_SOURCES[task].title} not found: expected {', '.join(train_names + test_names)} in {folder}; "
            f"{get_it(task, root)}"
        )
    return (_read_cifar_batches([folder / n for n in train_names], task, root),
            _read_cifar_batches([folder / n for n in test_names], task, root))


def _stratified_dev(y: torch.Tensor, dev_size: int) -> torch.Tensor:
    """Fixed-seed dev indices taking every class in proportion to its size (exactly 500 per class for 45k/5k).

    Images are shuffled with SPLIT_SEED; each gets its rank within its class in that order as a fraction of
    the class size, and the dev set is the dev_size images with the lowest fractions.
    """
    labels = y.numpy()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    shuffled = labels[order]
    fraction = np.empty(len(labels))
    for c in np.unique(shuffled):
        members = shuffled == c
        fraction[members] = np.arange(members.sum()) / members.sum()
    return torch.from_numpy(order[np.argsort(fraction, kind="stable")[:dev_size]])


def _split(data: ImageSet, dev_idx: torch.Tensor):
    """(train, dev) ImageSets, both in the original image order."""
    is_dev = torch.zeros(len(data), dtype=torch.bool)
    is_dev[dev_idx] = True
    return ImageSet(data.x[~is_dev], data.y[~is_dev]), ImageSet(data.x[is_dev], data.y[is_dev])


def load_images(task: str, data_dir=None, purpose: str = "search", npz_path=None,
                dev_size: int | None = None) -> ImageData:
    """Load an image task as uint8 tensors.

    purpose "search": train = the training split minus a dev set, valid = the dev set. The dev set is a
    fixed-seed, class-stratified pick (CIFAR: 5000 of 50k, reference §3.1; the bundled sample: 50 of 500, 5 per
    class), or for an npz given by `npz_path` its last `dev_size` images (default 500).
    purpose "final": train = the whole training split, valid = the official test set (reference §5.1).
    """
    check_task(task, IMAGE_TASKS)
    if purpose not in ("search", "final"):
        raise NaoWsError(f"unknown data purpose '{purpose}'; use 'search' or 'final'")
    src = IMAGE_SOURCES[task]
    if npz_path is not None:
        train, test = _read_npz(Path(npz_path), src.num_classes)
    elif task == "cifar10-sample":
        train, test = _read_npz(SAMPLE_NPZ, src.num_classes)
    else:
        train, test = _read_cifar(task, data_root(data_dir))
    if purpose == "final":
        if test is None:
            raise NaoWsError(
                f"{npz_path}: has no test split (x_test, y_test); use purpose 'search' or an npz with a test split"
            )
        return ImageData(train, test, src.num_classes, src.mean, src.std, task)
    n_dev = dev_size if dev_size is not None else (NPZ_DEV_SIZE if npz_path is not None else src.dev_size)
    if not 0 < n_dev < len(train):
        raise NaoWsError(
            f"dev set size {n_dev} must be between 1 and {len(train) - 1} (the training split has {len(train)} images)"
        )
    if npz_path is not None:
        dev_idx = torch.arange(len(train) - n_dev, len(train))
    else:
        dev_idx = _stratified_dev(train.y, n_dev)
    search_train, dev = _split(train, dev_idx)
    return ImageData(search_train, dev, src.num_classes, src.mean, src.std, task)
