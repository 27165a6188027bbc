"""``nao-ws search`` (any strategy on any score source) and ``nao-ws score`` (inherited-weight scores of any
architectures from a search's supernet)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .. import api
from ..config import recipes
from ..config.options import RunConfig
from ..data.tasks import IMAGE_TASKS
from ..search import options as so
from ..search.sources import kind_of
from ..search.sources.options import (ImageScoring, ProxyBatch, ProxyOptions, QueryBudget, StandaloneOptions,
                                      SupernetOptions, TableOptions)
from ..search.strategies.options import OPTIONS as STRATEGY_OPTIONS
from .common import run_options
from .options import IntRange, SectionedCommand, dataclass_options, own_fields, peek, section

PROXY_SPACES = ("nb201", "cnn-ws", "cnn")  # the image spaces (nao_ws.search.proxies)
SUPERNET_SPACES = {"cnn-ws": ("CIFAR-10 supernet (reference §3.1)", [recipes.CnnSupernet, ImageScoring, ProxyBatch, so.CnnWsSearch]),
                   "nb201": ("NAS-Bench-201 supernet (reference §8)", [recipes.Nb201Supernet, ImageScoring, ProxyBatch]),
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
        out.append(("Score source: a benchmark table (--benchmark nb201-12epoch | FILE, --space nb201)",
                    section(QueryBudget) + section(TableOptions)))
    if kind in (None, "proxy"):
        out.append(("Score source: a zero-cost proxy (--proxy NAME, --space nb201 | cnn-ws | cnn)",
                    section(QueryBudget) + section(ProxyOptions) + section(ProxyBatch)))
    if kind in (None, "standalone"):
        out.append(("Score source: standalone training (--space cnn, reference §4)", section(StandaloneOptions)))
    for name, cls in STRATEGY_OPTIONS.items():
        if cls is not None and strategy in (None, name):
            out.append((f"Strategy {name}", section(cls)))
    return out


@click.command(cls=SectionedCommand, sections=_sections)
@click.option("--task", type=click.Choice(api.SEARCH_TASKS), default=None,
              help="cifar10 (CNN cells) or ptb (RNN cells); on the NAS-Bench-201 table also cifar100, imagenet16")
@run_options("search")
@dataclass_options(*so.CONFIGS, exclude=("task",))
def search(task, preset, config_file, output, resume, progress, download, **flags):
    """Search cells: a strategy (--strategy nao, random, rea, enas or local) proposes architectures, a score source scores
    them: the inherited weights of a weight-sharing supernet (--space cnn-ws, rnn or nb201), training from
    scratch (--space cnn, paper Algorithm 1) or the NAS-Bench-201 table (--space nb201 --benchmark nb201-12epoch
    or FILE).
    Give --space, --benchmark and --strategy with --help to see only their options."""
    result = api.search(task, preset=preset, config=config_file, output=output, resume=resume, progress=progress,
                        download=download, **flags)
    extra = {k: result.record[k] for k in ("valid_accuracy", "test_accuracy") if k in result.record}
    click.echo(json.dumps({"best": result.best, "score": result.score, **extra, "run": str(result.run)}))


@click.command("score")
@click.option("--run", "run_path", default=None, help="the folder of a weight-sharing search (finished or not)")
@click.option("--proxy", default=None, help="zero-cost proxies instead of a run: params, flops, synflow, naswot, "
                                            "snip, grad_norm, jacob_cov (comma-separated, or all)")
@click.option("--archs", "archs_file", required=True, help="text file: one architecture's text form a line")
@click.option("--space", type=click.Choice(PROXY_SPACES), default=None,
              help="with --proxy: the space of the architectures (default: read from the file's first line)")
@click.option("--task", type=click.Choice(IMAGE_TASKS), default="cifar10", help="with --proxy: the images")
@click.option("--data-file", default=None, help="with --proxy: an .npz of CIFAR images (x, y) to read instead")
@click.option("--proxy-batch", type=IntRange(1), default=64, help="with --proxy: images of the minibatch")
@click.option("--seed", type=IntRange(0, 2**32 - 1), default=0,
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

    records = api.score(run_path, archs_file, proxy=proxy, space=space, task=task, data_file=data_file,
                        proxy_batch=proxy_batch, seed=seed, device=device, data_dir=data_dir, progress=progress)
    lines = [json.dumps(strict_json(r)) for r in records]
    if output:
        try:
            Path(output).write_text("".join(line + "\n" for line in lines))
        except OSError as e:
            raise io_error(e, f"writing --output {output}") from None
    click.echo("\n".join(lines))
