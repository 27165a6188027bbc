"""The tasks nao-ws knows and where their data lives; free of torch, so the command line can list them."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import NaoWsError

TASKS = ("cifar10", "cifar10-sample", "cifar100", "ptb", "wikitext2")
IMAGE_TASKS = ("cifar10", "cifar10-sample", "cifar100")
TEXT_TASKS = ("ptb", "wikitext2")
FOLDER_TASKS = ("imagenet",)  # an ImageFolder layout (reference §5.3): final training only, never downloaded
TRAIN_TASKS = TASKS + FOLDER_TASKS


def default_data_dir() -> Path:
    """$NAO_WS_DATA, else the source checkout's data/ (the one holding data/README.md), else ./data."""
    env = os.environ.get("NAO_WS_DATA")
    if env:
        return Path(env).expanduser()
    checkout_data = Path(__file__).resolve().parents[2] / "data"
    if (checkout_data / "README.md").is_file():
        return checkout_data
    return Path.cwd() / "data"


def data_root(data_dir) -> Path:
    """The dataset root; a file given as the root is a one-line error (no download is offered into it)."""
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    if root.is_file():
        hint = " (an .npz of CIFAR images is read with --data-file)" if root.suffix == ".npz" else ""
        raise NaoWsError(f"--data-dir {root} is a file, not a folder: pass the folder that holds the datasets{hint}")
    return root


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def get_it(task: str, root: Path) -> str:
    return f"run `nao-ws data download --task {task} --data-dir {root}`"


def check_task(task: str, allowed: tuple) -> None:
    if task not in allowed:
        raise NaoWsError(f"unknown task '{task}'; choose one of {', '.join(allowed)}")
