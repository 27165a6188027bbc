"""nao-ws from Python: ``search``, ``train``, ``score`` and ``report`` take the command line's options (a preset,
a config file, every flag as a keyword: ``--pool-size 6`` is ``pool_size=6``) and return results; the ``nao-ws``
commands call these functions. A user error raises :class:`~nao_ws.errors.NaoWsError` (never ``SystemExit``), and
a run that fails before its first checkpoint leaves no run folder, as on the command line.

    from nao_ws.api import score, search
    result = search("cifar10", space="nb201", benchmark="nb201-12epoch", strategy="rea", budget=100)
    result.best, result.score, result.run, result.pool[:3]
    score(archs=[result.best], proxy="synflow,naswot")  # zero-cost proxies of the untrained network
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config.options import build_config, config_to_dict, load_config_file, resolve
from .data.tasks import TASKS, TRAIN_TASKS
from .errors import USER_ERRORS, NaoWsError
from .search.sources.options import TABLE_TASKS

SEARCH_TASKS = tuple(dict.fromkeys(TASKS + TABLE_TASKS))  # NAS-Bench-201's table adds cifar100, imagenet16


@dataclasses.dataclass
class SearchResult:
    """A finished search: the best architecture's text form and score, the run folder, ``best.json``'s record,
    and every score the search wrote (``pool.jsonl``'s records, oldest first)."""

    best: str
    score: float
    run: Path
    record: dict
    pool: list[dict]


@dataclasses.dataclass
class TrainResult:
    """A finished training: its run folder and final figures (``metrics.json``); a dry run: the model's size
    and no run folder (nor on the processes of a data-parallel job but the first)."""

    run: Path | None
    metrics: dict


def _raises_nao_ws_error(fn):
    """User errors raised below nao_ws (an architecture's space, the controller's input) as NaoWsError."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NaoWsError:
            raise
        except USER_ERRORS as e:
            raise NaoWsError(str(e)) from None

    return wrapper


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- search --------------------------------------------------------------------------------------------------

def _search_config(task: str, preset: str, config_file, options: dict):
    """The resolved config of a new search; an option of another strategy than the one chosen is an error."""
    from supernet.spaces import SPACES

    from .cli.options import own_fields
    from .search import options as so
    from .search.strategies.options import OPTIONS as STRATEGY_OPTIONS

    from_file = load_config_file(config_file)
    space = options.get("space") or from_file.get("space")
    if space is not None and space not in SPACES:
        raise NaoWsError(f"--space {space} is unknown: use {' or '.join(SPACES)}")
    cls, presets, base = so.config_for(task, space, options.get("benchmark") or from_file.get("benchmark"),
                                       *(options.get(k) or from_file.get(k) for k in ("strategy", "policy_preset",
                                                                                       "proxy")))
    cfg = resolve(cls, presets, preset, config_file, {**options, "task": task}, base=base)
    for name, strategy_options in STRATEGY_OPTIONS.items():
        if strategy_options is None or name == cfg.strategy:
            continue
        given = [f.name for f in own_fields(strategy_options) if options.get(f.name) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise NaoWsError(f"{flag} is an option of --strategy {name}, not of {cfg.strategy}: drop it")
    return cfg


def _saved_config(saved: dict, overrides: dict):
    """The config of a search's ``config.json``, with ``overrides`` (e.g. another device) on top."""
    from .search import options as so

    cls, _, _ = so.config_for(saved.get("task", ""), saved.get("space"), saved.get("benchmark"),
                              proxy=saved.get("proxy"))
    return build_config(cls, saved, overrides, where=("config.json", "flags"))


def _dataset(cfg) -> str | None:
    """The dataset a search reads (None: a table search reads only its table)."""
    from .search.sources import source_kind

    return None if source_kind(cfg) == "table" else cfg.dataset or cfg.task


@contextlib.contextmanager
def _released_on_error(run):
    """A run folder this process owns is given back (its lock released) when what follows raises: a refused
    resume leaves the folder free for the corrected call, in this Python session too."""
    try:
        yield
    except BaseException:
        if run is not None:
            run.release()
        raise


def _open_for_resume(resume, task, config_file, options: dict):
    """The run folder (owned by this process) and its saved config, refused if config.json was edited since the
    run started; other options (but ``device``) would silently change the run."""
    from .runs import RunDir
    from .runs.started import check_config_unchanged

    run = RunDir.open(resume)
    with _released_on_error(run):
        extra = [k for k, v in options.items() if v is not None and k != "device"]
        if extra or task or config_file:
            named = ", ".join("--" + k.replace("_", "-") for k in extra) or "--task/--config"
            raise NaoWsError(f"--resume continues a run with its saved config.json; drop the other options ({named})")
        run.check_resumable()
        saved = run.read_config()
        check_config_unchanged(run.path, saved, run.load_latest_checkpoint(record=False))
        return run, saved


def _require_data(task: str, data_dir: str | None, npz_path: str | None = None, download: bool = False) -> None:
    """Missing or unreadable data is an error before the run folder exists (the corrected command may reuse
    it); with ``download``, missing data is fetched first."""
    from .data.download import check, require
    from .data.download import download as fetch

    if download:
        try:
            check(task, data_dir)
        except NaoWsError:
            fetch(task, data_dir)
    require(task, data_dir, npz_path)


@_raises_nao_ws_error
def search(task: str | None = None, *, preset: str = "paper", config: str | Path | None = None,
           output: str | Path | None = None, resume: str | Path | None = None, progress: bool = True,
           download: bool = False, **options: Any) -> SearchResult:
    """Search cells, as ``nao-ws search``: ``task`` and ``options`` (``space``, ``strategy``, ``benchmark``,
    ``budget``, ...) as its flags, over ``preset`` and the ``config`` file; ``resume`` continues the run in that
    folder (then give no other option but ``device``)."""
    from .runs import RunDir
    from .search import driver
    from .search.sources import source_kind

    if resume:
        run, saved = _open_for_resume(resume, task, config, options)
        with _released_on_error(run):
            driver.resumable(run)  # refuses a folder of another version before its config is read
            cfg = _saved_config(saved, {"device": options.get("device")})
            driver.check_config(cfg)  # device and --amp too
    else:
        if task not in SEARCH_TASKS:
            raise NaoWsError(f"--task is required: cifar10 (CNN cells) or ptb (RNN cells); on NAS-Bench-201's table "
                             f"also {', '.join(t for t in TABLE_TASKS if t != 'cifar10')}" if task is None else
                             f"--task {task} is unknown: use one of {', '.join(SEARCH_TASKS)}")
        cfg = _search_config(task, preset, config, options)
        driver.check_config(cfg)
        if _dataset(cfg) is not None:
            _require_data(_dataset(cfg), cfg.data_dir, getattr(cfg, "data_file", None), download=download)
        if source_kind(cfg) == "supernet":
            from .search.sources.supernet import check_data

            check_data(cfg)
        run = RunDir.create(None if output is None else str(output), "search", task)
    try:
        if not resume:
            run.write_config(config_to_dict(cfg))
            _say(f"run folder: {run.path}  (watch: tensorboard --logdir {run.path / 'tb'})")
        best = driver.run(cfg, run, resume=bool(resume), progress=progress)
    except USER_ERRORS:
        run.discard()
        raise
    finally:
        run.release()
    return SearchResult(best["text"], best["score"], run.path, best, run.read_jsonl("pool.jsonl"))


# -- train ---------------------------------------------------------------------------------------------------

def _defaults_from_arch(options: dict, task: str | None) -> str | None:
    """``arch="RUN/best.json"``: the space comes from the JSON and, without ``task``, the task (and the data,
    e.g. the bundled sample of a smoke search, or the search's ``data_dir``) from the search's ``config.json``
    beside it; an RNN cell keeps the search's ``cell_output`` unless ``cell_output`` is given."""
    from supernet.spaces import loads_strict, parse_arch

    from .runs import RunDir

    arch = options.get("arch")
    if isinstance(arch, str) and arch.lstrip().startswith("|") and options.get("space") is None:
        options["space"] = "nb201"  # a NAS-Bench-201 cell string (reference §8)
    if not arch or not Path(arch).is_file():
        if arch and task is None:
            parse_arch(arch, options.get("space"))  # a missing file's own error, before "--task is required"
        return task
    try:
        obj = loads_strict(Path(arch).read_bytes())
        space = (obj.get("arch") or obj).get("space")
    except (OSError, ValueError, AttributeError, RecursionError):  # not JSON: the text form, or broken
        parse_arch(arch, options.get("space"))  # the one-line error of a broken file, before "--task is required"
        return task
    if space in ("cnn-ws", "cnn", "nb201") and options.get("space") is None:
        options["space"] = space
    run_cfg = Path(arch).parent / "config.json"
    if run_cfg.is_file() and (task is None or space == "rnn"):
        saved = RunDir(run_cfg.parent).read_config()
        if task is None:
            task = saved.get("dataset") or saved.get("task")
            task = task if task in TASKS else None
        if options.get("data_dir") is None and saved.get("data_dir") and task == saved.get("task"):
            options["data_dir"] = saved["data_dir"]  # the data the search read (its --data-dir)
        if space == "rnn" and options.get("cell_output") is None and "cell_output" in saved:
            options["cell_output"] = saved["cell_output"]  # the cell as its search scored it (reference §1.3)
    return task


def _train_config(task, preset, config_file, resume, options: dict):
    """The config of a training, and for ``resume`` its run folder (checked resumable)."""
    from .runs import check_device
    from .train.options import config_class

    if resume:
        run, saved = _open_for_resume(resume, task, config_file, options)
        with _released_on_error(run):
            if saved.get("task") not in TRAIN_TASKS:
                raise NaoWsError(f"{run.path}/config.json names no task nao-ws trains: the run folder is damaged")
            cls, _, _ = config_class(saved["task"])
            cfg = build_config(cls, saved, {"device": options.get("device")}, where=("config.json", "flags"))
            check_device(cfg)
            return cfg, run
    task = _defaults_from_arch(options, task)
    if task not in TRAIN_TASKS:
        raise NaoWsError(f"--task is required ({', '.join(TRAIN_TASKS)})" if task is None else
                         f"--task {task} is unknown: use one of {', '.join(TRAIN_TASKS)}")
    flags = {**options, "task": task}
    cls, presets, base = config_class(task, options.get("space"))
    cfg = resolve(cls, presets, preset, config_file, flags, base=base)
    space = getattr(cfg, "space", None)
    if space != options.get("space"):  # the space came from --config: resolved again with its recipe
        cls, presets, base = config_class(task, space)
        cfg = resolve(cls, presets, preset, config_file, flags, base=base)
    return cfg, None


def _train_check(cfg, procs, nproc: int, download: bool, dry_run: bool) -> dict:
    """Every option, the architecture and the share of the batch each process gets; but for a dry run also the
    device and the data; on every process (the first problem stops them all before anything is created).
    Returns the dry run's report."""
    import torch

    from .data.batches import process_share
    from .runs import check_device
    from .runs.devices import check_memory
    from .train import training_of

    def check() -> dict:
        training = training_of(cfg.task)
        if download:
            _require_data(cfg.task, cfg.data_dir, download=True)
        info = training.dry_run(cfg)
        process_share(cfg.batch_size, 0, procs.world if procs is not None else nproc)
        if dry_run:
            return info
        device = check_device(cfg)
        check_memory(info["params"], device, "lower --channels, --layers or the hidden sizes")
        if procs is not None:
            procs.place(device)
        elif device.type == "cuda" and nproc > torch.cuda.device_count():
            raise NaoWsError(f"--nproc {nproc} asks for a GPU per process, and this machine has "
                             f"{torch.cuda.device_count()}: use --nproc {torch.cuda.device_count()} or fewer")
        _require_data(cfg.task, cfg.data_dir)
        return info

    return check() if procs is None else procs.agree(check)


@_raises_nao_ws_error
def train(task: str | None = None, *, preset: str = "paper", config: str | Path | None = None,
          output: str | Path | None = None, resume: str | Path | None = None, progress: bool = True,
          download: bool = False, dry_run: bool = False, procs=None, nproc: int = 1, **options: Any) -> TrainResult:
    """Train a discovered cell from scratch, as ``nao-ws train``: ``arch`` (a text form, or a search's
    ``best.json``) and the other options as its flags; ``dry_run`` builds the model and reports its size.
    ``procs``: this process's place in a data-parallel job (``nao_ws.train.distributed.start``; default: the
    only process). ``nproc`` > 1 without ``procs`` is the launcher's part of ``nao-ws train --nproc``: everything
    is checked for that many processes and nothing trained (the command then starts them)."""
    from .monitor import Monitor
    from .runs import RunDir
    from .runs.devices import out_of_memory
    from .train import training_of
    from .train.distributed import SINGLE
    from .train.options import config_class

    options = {k: str(v) if k == "arch" and isinstance(v, Path) else v for k, v in options.items()}
    if procs is None and nproc == 1:
        procs = SINGLE
    main = procs is None or procs.main
    cfg, run = _train_config(task, preset, config, resume, options) if main else (None, None)
    with _released_on_error(run):
        if procs is not None and procs.world > 1:  # rank 0's config (its run folder's, for resume) for everyone
            saved = procs.broadcast(config_to_dict(cfg) if main else None)
            if not main:
                cfg = build_config(config_class(saved["task"])[0], saved, where=("the config of rank 0",))
        info = _train_check(cfg, procs, nproc, download, dry_run)
    if dry_run or procs is None:  # the launcher's processes take the run folder (the first of them)
        if run is not None:
            run.release()
        return TrainResult(None, info)
    monitor = None
    try:
        if main and not resume:
            # the architecture itself, not the file naming it: a resume must train what this run trained
            cfg = dataclasses.replace(cfg, arch=info["arch"])
            run = RunDir.create(None if output is None else str(output), "train", cfg.task)
            run.write_config(config_to_dict(cfg))
            _say(f"run folder: {run.path}  (watch: tensorboard --logdir {run.path / 'tb'})")
        monitor = Monitor(run.path, progress=progress) if main else Monitor(None, progress=False, echo=False)
        result = training_of(cfg.task).train(cfg, run, monitor, resume=bool(resume), procs=procs)
    except USER_ERRORS:  # an unreadable image, say: the folder goes unless an epoch was checkpointed
        if run is not None:
            run.discard(first_step=1)
        raise
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        if run is not None:
            run.discard(first_step=1)
        again = f" and a new --output ({run.path} keeps its checkpoints)" if run and run.path.exists() else ""
        raise NaoWsError(f"out of memory on {cfg.device}: start again with a lower --batch-size, --channels or "
                         f"--layers{again}") from None
    finally:
        if monitor is not None:
            monitor.close()
        if run is not None:
            run.release()
    return TrainResult(None if run is None else run.path, result)


# -- score ---------------------------------------------------------------------------------------------------

def _read_archs(archs, space: str | None, run: Path | None = None) -> list[tuple[int, object]]:
    """(line number, architecture) of a file of text forms or of a list of them, all of ``space`` (the space
    ``run`` searched; None: the space the first one names by its form)."""
    from supernet.spaces import parse_arch

    from .search import scoring

    if isinstance(archs, (str, Path)):
        space = scoring.space_of_file(archs, space)
        why = f"{run} searched the {space} space" if run is not None else f"--space is {space}"
        return scoring.read_archs(archs, space, why)
    archs = [str(t).strip() for t in archs]
    bad = next((t for t in archs if not t.startswith(scoring.ARCH_STARTS)), None)
    if bad is not None:  # never a file path: parse_arch would read the file it names
        raise NaoWsError(f"'{bad[:40]}' is not an architecture's text form (reference §7)")
    if not archs:
        raise NaoWsError("archs holds no architecture: give text forms of the searched space")
    space = space or parse_arch(archs[0]).space
    return [(n, parse_arch(text, space)) for n, text in enumerate(archs, 1)]


@_raises_nao_ws_error
def score(run: str | Path | None = None, archs: str | Path | Sequence[str] | None = None, *,
          proxy: str | None = None, space: str | None = None, task: str = "cifar10", data_file: str | None = None,
          proxy_batch: int = 64, seed: int = 0, device: str | None = None, data_dir: str | None = None,
          progress: bool = True) -> list[dict]:
    """Score architectures, as ``nao-ws score``: with the inherited weights of the weight-sharing search in
    ``run`` (its latest checkpoint), as the search scores its pool, or with the zero-cost ``proxy`` (names,
    comma-separated, or ``all``) of the untrained networks on ``proxy_batch`` images of ``task`` (reference §10).
    ``archs``: a file with one text form a line, or a list of text forms. One record per architecture."""
    from .search import scoring

    if (run is None) == (proxy is None):
        raise NaoWsError("give --run (a search's inherited weights) or --proxy (zero-cost proxies), one of them")
    if archs is None:
        raise NaoWsError("--archs is required: a file with one architecture's text form a line")
    if proxy is not None:
        from .data.images import load_images
        from .runs import resolve_device
        from .search import proxies

        names = proxies.parse_proxies(proxy)
        parsed = _read_archs(archs, space)
        _require_data(task, data_dir, data_file)
        images = load_images(task, data_dir, npz_path=data_file)
        return list(scoring.proxy_scores(parsed, names, images, proxy_batch, seed, resolve_device(device or "auto"),
                                         progress))
    given = [f for f, v in (("space", space), ("data-file", data_file)) if v is not None]
    if given:
        raise NaoWsError(f"--{given[0]} is an option of --proxy: a run's scores use the run's own")
    run_dir, ckpt = scoring.open_run(run)  # a weight-sharing search's checkpoint
    cfg = _saved_config(run_dir.read_config(), {"device": device, "data_dir": data_dir})
    parsed = _read_archs(archs, cfg.space, run_dir.path)
    _require_data(_dataset(cfg), cfg.data_dir, getattr(cfg, "data_file", None))
    return list(scoring.score(cfg, ckpt, parsed, progress))


# -- report --------------------------------------------------------------------------------------------------

@_raises_nao_ws_error
def report(runs: str | Path | Sequence[str | Path], output: str | Path | None = None):
    """Summarise search runs and draw their figures, as ``nao-ws report``: a :class:`nao_ws.report.Report`
    (its ``text``, each run's summary, the figures' paths)."""
    from .report import report as make

    return make([runs] if isinstance(runs, (str, Path)) else list(runs), output)
