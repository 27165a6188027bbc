"""``nao-ws search`` (any strategy on any score source) and ``nao-ws score`` (inherited-weight scores of any
architectures from a search's supernet)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from supernet.spaces import SPACES

from ..config import recipes
from ..config.options import RunConfig, build_config, config_to_dict, load_config_file, resolve
from ..data.tasks import IMAGE_TASKS, TASKS
from ..errors import USER_ERRORS, NaoWsError
from ..search import options as so
from ..search.sources import kind_of, source_kind
from ..search.sources.options import (TABLE_TASKS, ImageScoring, ProxyOptions, QueryBudget, StandaloneOptions,
                                      SupernetOptions, TableOptions)
from ..search.strategies.options import OPTIONS as STRATEGY_OPTIONS
from .common import open_for_resume, require_data, run_options
from .options import SectionedCommand, dataclass_options, own_fields, peek, section

SEARCH_TASKS = tuple(dict.fromkeys(TASKS + TABLE_TASKS))
PROXY_SPACES = ("nb201", "cnn-ws", "cnn")  # the image spaces (nao_ws.search.proxies)
SUPERNET_SPACES = {"cnn-ws": ("CIFAR-10 supernet (reference §3.1)", [recipes.CnnSupernet, ImageScoring, so.CnnWsSearch]),
                   "nb201": ("NAS-Bench-201 supernet (reference §8)", [recipes.Nb201Supernet, ImageScoring]),
                   "rnn": ("PTB supernet (reference §3.2)", [recipes.RnnSupernet, so.RnnWsSearch])}


def _sections(args: list[str]) -> list[tuple[str, list]]:
    """The options of the search the command line names (all of them while it names none)."""
    space, strategy, benchmark = peek(args, "--space"), peek(args, "--strategy"), peek(args, "--benchmark")
    proxy = peek(args, "--proxy")
    kind = kind_of(space, benchmark, proxy) if space or benchmark or proxy else None
    out = [("Run", section(RunConfig, own_fields(RunConfig)[1:]) + section(so.SearchOptions))]
    if kind in (None, "supernet"):
        out.append(("Score source: a weight-sharing supernet (--space cnn-ws | nb201 | rnn)", section(SupernetOptions)))
        for name, (title, classes) in SUPERNET_SPACES.items():
            if space in (None, name):
                out.append((title, [row for cls in classes for row in section(cls)]))
    if kind in (None, "table"):
        out.append(("Score source: a benchmark table (--benchmark FILE, --space nb201)", section(QueryBudget) + section(TableOptions)))
    if kind in (None, "proxy"):
        out.append(("Score source: a zero-cost proxy (--proxy NAME, --space nb201 | cnn-ws | cnn)",
                    section(QueryBudget) + section(ProxyOptions)))
    if kind in (None, "standalone"):
        out.append(("Score source: standalone training (--space cnn, reference §4)", section(StandaloneOptions)))
    for name, cls in STRATEGY_OPTIONS.items():
        if cls is not None and strategy in (None, name):
            out.append((f"Strategy {name}", section(cls)))
    return out


def _search_config(task, preset, config_file, flags):
    """The resolved config of a new search; a flag of another strategy than the one chosen is an error."""
    from_file = load_config_file(config_file)
    space = flags.get("space") or from_file.get("space")
    if space is not None and space not in SPACES:
        raise NaoWsError(f"--space {space} is unknown: use {' or '.join(SPACES)}")
    cls, presets, base = so.config_for(task, space, flags.get("benchmark") or from_file.get("benchmark"),
                                       *(flags.get(k) or from_file.get(k) for k in ("strategy", "policy_preset",
                                                                                     "proxy")))
    cfg = resolve(cls, presets, preset, config_file, {**flags, "task": task}, base=base)
    for name, options in STRATEGY_OPTIONS.items():
        if options is None or name == cfg.strategy:
            continue
        given = [f.name for f in own_fields(options) if flags.get(f.name) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise NaoWsError(f"{flag} is an option of --strategy {name}, not of {cfg.strategy}: drop it")
    return cfg


def _saved_config(saved: dict, overrides: dict):
    cls, _, _ = so.config_for(saved.get("task", ""), saved.get("space"), saved.get("benchmark"),
                              proxy=saved.get("proxy"))
    return build_config(cls, saved, overrides, where=("config.json", "flags"))


def _dataset(cfg) -> str | None:
    """The dataset a search reads (None: a table search reads only its table)."""
    return None if source_kind(cfg) == "table" else cfg.dataset or cfg.task


@click.command(cls=SectionedCommand, sections=_sections)
@click.option("--task", type=click.Choice(SEARCH_TASKS), default=None,
              help="cifar10 (CNN cells) or ptb (RNN cells); on the NAS-Bench-201 table also cifar100, imagenet16")
@run_options("search")
@dataclass_options(*so.CONFIGS, exclude=("task",))
def search(task, preset, config_file, output, resume, progress, download, **flags):
    """Search cells: a strategy (--strategy nao, random, rea, enas or local) proposes architectures, a score source scores
    them: the inherited weights of a weight-sharing supernet (--space cnn-ws, rnn or nb201), training from
    scratch (--space cnn, paper Algorithm 1) or the NAS-Bench-201 table (--space nb201 --benchmark FILE).
    Give --space, --benchmark and --strategy with --help to see only their options."""
    from ..runs import RunDir
    from ..search import driver

    if resume:
        run, saved = open_for_resume(resume, task, config_file, flags)
        driver.resumable(run)  # refuses a folder of another version before its config is read
        cfg = _saved_config(saved, {"device": flags.get("device")})
        driver.check_config(cfg)  # device and --amp too
    else:
        if task is None:
            raise NaoWsError("--task is required: cifar10 (CNN cells) or ptb (RNN cells)")
        cfg = _search_config(task, preset, config_file, flags)
        driver.check_config(cfg)
        if _dataset(cfg) is not None:
            require_data(_dataset(cfg), cfg.data_dir, getattr(cfg, "data_file", None), download=download)
        run = RunDir.create(output, "search", task)
    try:
        if not resume:
            run.write_config(config_to_dict(cfg))
            click.echo(f"run folder: {run.path}  (watch: tensorboard --logdir {run.path / 'tb'})", err=True)
        best = driver.run(cfg, run, resume=bool(resume), progress=progress)
    except USER_ERRORS:
        run.discard()
        raise
    extra = {k: best[k] for k in ("valid_accuracy", "test_accuracy") if k in best}
    click.echo(json.dumps({"best": best["text"], "score": best["score"], **extra, "run": str(run.path)}))


@click.command("score")
@click.option("--run", "run_path", default=None, help="the folder of a weight-sharing search (finished or not)")
@click.option("--proxy", default=None, help="zero-cost proxies instead of a run: params, flops, synflow, naswot, "
                                            "snip, grad_norm, jacob_cov (comma-separated, or all)")
@click.option("--archs", "archs_file", required=True, help="text file: one architecture's text form a line")
@click.option("--space", type=click.Choice(PROXY_SPACES), default=None,
              help="with --proxy: the space of the architectures (default: read from the file's first line)")
@click.option("--task", type=click.Choice(IMAGE_TASKS), default="cifar10", help="with --proxy: the images")
@click.option("--data-file", default=None, help="with --proxy: an .npz of CIFAR images (x, y) to read instead")
@click.option("--proxy-batch", type=click.IntRange(1), default=64, help="with --proxy: images of the minibatch")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0,
              help="with --proxy: the networks' initialisation and the minibatch")
@click.option("--device", default=None, help="auto | cpu | cuda[:N] (default: the run's; with --proxy auto)")
@click.option("--data-dir", default=None, help="dataset root (default: the one the run used)")
@click.option("--output", default=None, help="also write the JSON lines to this file")
@click.option("--progress/--no-progress", default=True, help="tqdm progress bars")
def score(run_path, proxy, archs_file, space, task, data_file, proxy_batch, seed, device, data_dir, output, progress):
    """Score the architectures of ARCHS with the inherited weights of the search in RUN (its latest
    checkpoint), as the search scores its pool, or with zero-cost proxies (--proxy); print one JSON line per
    architecture (arch, score, ...)."""
    from ..runs.files import io_error, strict_json
    from ..search import scoring

    if (run_path is None) == (proxy is None):
        raise NaoWsError("give --run (a search's inherited weights) or --proxy (zero-cost proxies), one of them")
    if proxy is not None:
        records = _proxy_records(proxy, archs_file, space, task, data_file, data_dir, proxy_batch, seed, device,
                                 progress)
    else:
        given = [f for f, v in (("space", space), ("data-file", data_file)) if v is not None]
        if given:
            raise NaoWsError(f"--{given[0]} is an option of --proxy: a run's scores use the run's own")
        run, ckpt = scoring.open_run(run_path)  # a weight-sharing search's checkpoint
        cfg = _saved_config(run.read_config(), {"device": device, "data_dir": data_dir})
        archs = scoring.read_archs(archs_file, cfg.space, f"{run.path} searched the {cfg.space} space")
        require_data(_dataset(cfg), cfg.data_dir, getattr(cfg, "data_file", None))
        records = scoring.score(cfg, ckpt, archs, progress)
    lines = [json.dumps(strict_json(r)) for r in records]
    if output:
        try:
            Path(output).write_text("".join(line + "\n" for line in lines))
        except OSError as e:
            raise io_error(e, f"writing --output {output}") from None
    click.echo("\n".join(lines))


def _proxy_records(proxy, archs_file, space, task, data_file, data_dir, batch, seed, device, progress):
    from ..data.images import load_images
    from ..runs import resolve_device
    from ..search import proxies, scoring

    names = proxies.parse_proxies(proxy)
    space = scoring.space_of_file(archs_file, space)
    archs = scoring.read_archs(archs_file, space, f"--space is {space}")
    require_data(task, data_dir, data_file)
    images = load_images(task, data_dir, npz_path=data_file)
    return list(scoring.proxy_scores(archs, names, images, batch, seed, resolve_device(device or "auto"), progress))
