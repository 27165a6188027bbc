"""``nao-ws score``: any architectures scored with the inherited weights of a weight-sharing search, or by
zero-cost proxies at initialisation (``proxies``).

    nao-ws score --run runs/search-cifar10-... --archs cells.txt
    nao-ws score --proxy synflow,naswot --archs cells.txt --space nb201

The run may have finished or been interrupted: its newest valid checkpoint holds the supernet. The score
source is built from the run's ``config.json`` (``sources.supernet``, so every weight-sharing space works),
the checkpoint's supernet state is loaded, and each architecture is scored exactly as the search scores its
pool (the same fixed dev data). The run folder is only read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from supernet.spaces import SpaceError, get_space, parse_arch

from ..errors import NaoWsError
from ..monitor import Monitor
from ..runs import RunDir
from .driver import FORMAT
from .sources.supernet import SupernetSource
from .strategies import canonical_text

ARCH_STARTS = tuple("0123456789{[|")  # a line's first character: integers, one-line JSON, an nb201 string


def read_archs(path: str | Path, space: str, why: str) -> list[tuple[int, object]]:
    """(line number, architecture) for each line of ``path`` that is not blank or a ``#`` comment; ``why`` says
    why they must be of ``space`` (e.g. "runs/x searched the nb201 space")."""
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a file" if p.is_dir() else "does not exist"
        raise NaoWsError(f"--archs {p} {what}: give a text file with one architecture a line")
    try:
        lines = p.read_bytes().decode("utf-8").splitlines()
    except OSError as e:
        raise NaoWsError(f"--archs {p} cannot be read ({e.strerror}): check its permissions") from None
    except UnicodeDecodeError:
        raise NaoWsError(f"--archs {p} is not text (not UTF-8): give one architecture's text form a line") from None
    out = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not text.startswith(ARCH_STARTS):  # never a file path: parse_arch would read the file it names
            raise NaoWsError(f"{p} line {n}: '{text[:40]}' is not an architecture's text form (reference §7)")
        try:
            out.append((n, parse_arch(text, space)))
        except SpaceError as e:
            try:
                other = parse_arch(text).space
            except SpaceError:
                other = space
            if other != space:
                raise NaoWsError(f"{p} line {n} is an architecture of space {other}, but {why}: give {space} "
                                 "architectures") from None
            raise NaoWsError(f"{p} line {n}: {e}") from None
    if not out:
        raise NaoWsError(f"--archs {p} holds no architecture (blank lines and # comments only)")
    return out


def open_run(path: str | Path) -> tuple[RunDir, dict]:
    """The run folder and its newest valid search checkpoint; nothing in the folder is written."""
    run = RunDir(path)
    if not (run.path / "config.json").is_file():
        raise NaoWsError(f"--run {run.path} is not a run folder (no config.json): pass the folder a search wrote")
    ckpt = run.load_latest_checkpoint(record=False)
    if ckpt is None:
        raise NaoWsError(f"--run {run.path} holds no checkpoint yet: its supernet was never saved")
    if ckpt.get("kind") != "search" or ckpt.get("format") != FORMAT or "supernet" not in ckpt["source"]:
        raise NaoWsError(f"--run {run.path} is not a weight-sharing search of this nao-ws version: score takes the "
                         "folder of nao-ws search on cnn-ws, rnn or nb201")
    return run, ckpt


def score(cfg, ckpt: dict, archs: list[tuple[int, object]], progress: bool = True) -> Iterator[dict]:
    """One record per architecture: its line, text and canonical forms, the supernet's epoch, the task's
    score and metrics (``score``: higher is better), as the search scores a pool (with ``--score-proxy``,
    ranked among ``archs``)."""
    source = SupernetSource(cfg)
    source.load_state_dict(ckpt["source"])
    space = get_space(cfg.space)
    results = dict(r for chunk in source.score([a for _, a in archs], Monitor(None, progress=progress)) for r in chunk)
    for i, (n, arch) in enumerate(archs):
        yield {"line": n, "arch": space.format(arch), "canonical": canonical_text(space, arch), **results[i]}


def space_of_file(path: str | Path, space: str | None) -> str:
    """``space``, or the space the first architecture line of ``path`` names by its form (reference §7)."""
    if space is not None:
        return space
    p = Path(path)
    if p.is_file():
        try:
            text = next((t for t in map(str.strip, p.read_bytes().decode("utf-8").splitlines())
                         if t and not t.startswith("#")), "")
            if text.startswith(ARCH_STARTS):
                return parse_arch(text).space
        except (OSError, UnicodeDecodeError, SpaceError):
            pass  # read_archs names what is wrong with the file
    return "nb201"


def proxy_scores(archs: list[tuple[int, object]], names: list[str], images, batch: int, seed: int, device,
                 progress: bool = True) -> Iterator[dict]:
    """One record per architecture: its line, text and canonical forms, each proxy of ``names`` and ``score``
    (the first one's), on ``batch`` training images of ``images`` drawn with ``seed``."""
    from . import proxies

    x, y = proxies.minibatch(images, batch, seed, device)
    monitor = Monitor(None, progress=progress)
    with monitor.bar(total=len(archs), desc="proxies") as bar:
        for n, arch in archs:
            values = proxies.score(arch, names, x, y, images.num_classes, seed)
            space = get_space(arch.space)
            yield {"line": n, "arch": space.format(arch), "canonical": canonical_text(space, arch),
                   "score": values[names[0]], **values}
            bar.update(1)
