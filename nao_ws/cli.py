"""The ``nao-ws`` command line: one click group; each command parses options and calls one function."""
from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from pathlib import Path

import click
import numpy as np

from .errors import USER_ERRORS, NaoWsError

TASK_CHOICES = ("cifar10", "cifar10-sample", "cifar100", "ptb", "wikitext2")
SPACE_CHOICES = ("cnn-ws", "cnn", "rnn", "nb201")
# Which module trains the final network of each task; each exposes Config, PRESETS, task_defaults(task),
# dry_run(cfg), train(cfg, run, monitor, resume) and evaluate(state, device, data_dir).
TRAINERS = {"cifar10": "nao_ws.train_cnn", "cifar10-sample": "nao_ws.train_cnn", "cifar100": "nao_ws.train_cnn",
            "ptb": "nao_ws.train_rnn", "wikitext2": "nao_ws.train_rnn"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nao-ws")
def cli():
    """nao-ws: Neural Architecture Optimization with ENAS-style weight sharing.

    \b
    Quick start (bundled CIFAR-10 sample, CPU is fine):
      nao-ws search --task cifar10 --preset smoke
    """


def main(argv=None):
    """Entry point: user errors become one line on stderr and exit status 2, never a traceback."""
    try:
        cli.main(args=argv, standalone_mode=False, prog_name="nao-ws")
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except USER_ERRORS as e:
        click.echo("error: " + " ".join(str(e).splitlines()), err=True)  # one line, whatever the input held
        sys.exit(2)
    except OSError as e:  # a read or write no code path above turned into a NaoWsError (e.g. a full disk)
        from .runs import io_error

        click.echo(f"error: {io_error(e, 'reading or writing ' + str(e.filename or 'a file'))}", err=True)
        sys.exit(2)


# -- arch --------------------------------------------------------------------------------------------------

@cli.group()
def arch():
    """Sample, validate and convert architectures (text form, JSON form, canonical form)."""


@arch.command("sample")
@click.option("--space", type=click.Choice(SPACE_CHOICES), default="cnn-ws", show_default=True)
@click.option("-n", "num", type=click.IntRange(min=1), default=1, show_default=True, help="how many")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--unique/--no-unique", default=False, help="drop samples equal to an earlier one (canonical form)")
def arch_sample(space, num, seed, unique):
    """Print N uniformly sampled architectures in the text form, one per line."""
    from supernet.spaces import get_space

    sp = get_space(space)
    rng = np.random.default_rng(seed)
    seen = set()
    while len(seen) < num if unique else num > 0:
        a = sp.sample(rng)
        if unique:
            key = sp.canonical(a)
            if key in seen:
                continue
            seen.add(key)
        else:
            num -= 1
        click.echo(sp.format(a))


@arch.command("show")
@click.argument("arch_text", metavar="ARCH")
@click.option("--space", type=click.Choice(SPACE_CHOICES), default=None,
              help="expected space (default: from the JSON; 22/23 integers = rnn, 40 = cnn-ws)")
def arch_show(arch_text, space):
    """Validate ARCH (text, JSON or a JSON file) and print its JSON form and canonical text form."""
    from supernet.spaces import space_of, parse_arch

    a = parse_arch(arch_text, space)
    sp = space_of(a)
    click.echo(json.dumps(sp.to_json(a)))
    click.echo("canonical: " + sp.format(sp.canonical(a)))


# -- data --------------------------------------------------------------------------------------------------

@cli.group()
def data():
    """Check or download datasets."""


@data.command("check")
@click.option("--task", type=click.Choice(TASK_CHOICES), required=True)
@click.option("--data-dir", default=None, help="dataset root (default: $NAO_WS_DATA or data/)")
def data_check(task, data_dir):
    """Verify that TASK's data is present and readable; print what was found."""
    from . import datasets

    click.echo(datasets.check(task, data_dir))


@data.command("download")
@click.option("--task", type=click.Choice(TASK_CHOICES), required=True)
@click.option("--data-dir", default=None, help="dataset root (default: $NAO_WS_DATA or data/)")
def data_download(task, data_dir):
    """Download TASK's data from its public source into the dataset root."""
    from . import datasets

    path = datasets.download(task, data_dir)
    click.echo(f"{task}: ready in {path}")
    click.echo(datasets.check(task, data_dir))


def _defaults_from_arch(flags: dict, task: str | None) -> str | None:
    """``--arch RUN/best.json``: the space comes from the JSON and, without ``--task``, the task (and the
    data, e.g. the bundled sample of a smoke search) from the search's ``config.json`` beside it; an RNN
    cell keeps the search's ``cell_output`` unless ``--cell-output`` is given."""
    arch = flags.get("arch")
    if not arch or not Path(arch).is_file():
        return task
    try:
        obj = json.loads(Path(arch).read_bytes())
        space = (obj.get("arch") or obj).get("space")
    except (OSError, ValueError, AttributeError, RecursionError):  # not JSON: the text form, or broken
        from supernet.spaces import parse_arch

        parse_arch(arch, flags.get("space"))  # the one-line error of a broken file, before "--task is required"
        return task
    if space in ("cnn-ws", "cnn") and flags.get("space") is None:
        flags["space"] = space
    run_cfg = Path(arch).parent / "config.json"
    if run_cfg.is_file() and (task is None or space == "rnn"):
        from .runs import RunDir

        saved = RunDir(run_cfg.parent).read_config()
        if task is None:
            task = saved.get("dataset") or saved.get("task")
            task = task if task in TRAINERS else None
        if space == "rnn" and flags.get("cell_output") is None and "cell_output" in saved:
            flags["cell_output"] = saved["cell_output"]  # the cell as its search scored it (SPEC 1.3)
    return task


def _open_for_resume(resume: str, task, config_file, flags: dict):
    """The run folder and its saved config; other options (but --device) would silently change the run."""
    from .runs import RunDir

    run = RunDir.open(resume)
    extra = [k for k, v in flags.items() if v is not None and k != "device"]
    if extra or task or config_file:
        named = ", ".join("--" + k.replace("_", "-") for k in extra) or "--task/--config"
        raise NaoWsError(f"--resume continues a run with its saved config.json; drop the other options ({named})")
    run.check_resumable()
    return run, run.read_config()


def _require_data(task: str, data_dir: str | None, npz_path: str | None = None) -> None:
    """Missing or unreadable data is an error before the run folder exists (the corrected command may reuse it)."""
    from . import datasets

    datasets.require(task, data_dir, npz_path)


def _ensure_data(task: str, data_dir: str | None) -> None:
    """Download ``task``'s data unless it is already there and readable."""
    from . import datasets

    try:
        datasets.check(task, data_dir)
    except NaoWsError:
        datasets.download(task, data_dir)


# -- train / eval ------------------------------------------------------------------------------------------

def _trainer(task: str):
    if task not in TRAINERS:
        raise NaoWsError(f"unknown task '{task}'; choose one of {', '.join(TRAINERS)}")
    return importlib.import_module(TRAINERS[task])


def _train_config_classes():
    return [importlib.import_module(m).Config for m in sorted(set(TRAINERS.values()))]


def _with_train_options(fn):
    from .config import config_options

    return config_options(*_train_config_classes(), exclude=("task",))(fn)


@cli.command()
@click.option("--task", type=click.Choice(TASK_CHOICES), default=None, help="dataset / kind of network")
@click.option("--preset", default="paper", show_default=True, help="paper | smoke")
@click.option("--config", "config_file", default=None, help="JSON or YAML file of option overrides")
@click.option("--output", default=None, help="run folder (default runs/train-<task>-<time>)")
@click.option("--resume", default=None, help="continue the run in this folder from its last checkpoint")
@click.option("--dry-run", is_flag=True, help="build the model, report its size, exit")
@click.option("--json", "as_json", is_flag=True, help="with --dry-run: print one JSON object")
@click.option("--progress/--no-progress", default=True, help="tqdm progress bars")
@click.option("--download", is_flag=True, help="fetch the task's dataset first if it is missing")
@_with_train_options
def train(task, preset, config_file, output, resume, dry_run, as_json, progress, download, **flags):
    """Train a discovered cell from scratch (SPEC 5), e.g. --task cifar10 --arch RUN/best.json."""
    from .config import build_config, config_to_dict, resolve
    from .monitor import Monitor
    from .runs import RunDir, check_device

    if resume:
        run, saved = _open_for_resume(resume, task, config_file, flags)
        mod = _trainer(saved.get("task", ""))
        cfg = build_config(mod.Config, saved, {"device": flags.get("device")}, where=("config.json", "flags"))
        check_device(cfg)
    else:
        task = _defaults_from_arch(flags, task)
        if task is None:
            raise NaoWsError("--task is required (cifar10, cifar10-sample, cifar100, ptb or wikitext2)")
        mod = _trainer(task)
        cfg = resolve(mod.Config, mod.PRESETS, preset, config_file, {**flags, "task": task},
                      base=mod.task_defaults(task))
    if download:
        _ensure_data(cfg.task, cfg.data_dir)
    info = mod.dry_run(cfg)  # checks every option and the architecture
    if dry_run:
        click.echo(json.dumps(info) if as_json else "\n".join(f"{k}: {v}" for k, v in info.items()))
        return
    if not resume:
        check_device(cfg)
        _require_data(cfg.task, cfg.data_dir)
        # the architecture itself, not the file naming it: a resume must train what this run trained
        cfg = dataclasses.replace(cfg, arch=info["arch"])
        run = RunDir.create(output, "train", task)
    monitor = None
    try:
        if not resume:
            run.write_config(config_to_dict(cfg))
        monitor = Monitor(run.path, progress=progress)
        result = mod.train(cfg, run, monitor, resume=bool(resume))
    except USER_ERRORS:
        run.discard()
        raise
    finally:
        if monitor is not None:
            monitor.close()
    click.echo(json.dumps(result))


def _with_search_options(fn):
    from .config import config_options
    from .search import CnnSearchConfig, Nb201SearchConfig, RnnSearchConfig
    from .standalone import Config as StandaloneConfig
    from .tabular import Config as TabularConfig

    return config_options(CnnSearchConfig, RnnSearchConfig, Nb201SearchConfig, StandaloneConfig, TabularConfig,
                          exclude=("task",))(fn)


def _check_search(cfg) -> None:
    from . import search as ws, standalone, tabular

    if isinstance(cfg, tabular.Config):
        tabular.check_config(cfg)
    else:
        (standalone.check_config if cfg.space == "cnn" else ws.check_config)(cfg)


def _search_kind(task: str, space: str | None, benchmark: bool = False):
    """The weight-sharing search (``nao_ws.search``; ``--space nb201`` too), for ``--space cnn`` the
    standalone one, for ``--space nb201 --benchmark FILE`` the search on a tabular benchmark (``nao_ws.tabular``)."""
    from . import search as ws, standalone, tabular

    if space == "cnn":
        return standalone.Config, standalone.PRESETS, standalone.task_defaults(task)
    if space == "nb201" and benchmark:
        return tabular.Config, tabular.PRESETS, tabular.task_defaults(task)
    return ws.config_class(task, space), ws.presets(task, space), ws.task_defaults(task)


@cli.command()
@click.option("--task", type=click.Choice(("cifar10", "cifar10-sample", "ptb", "wikitext2", "cifar100", "imagenet16")),
              default=None, help="cifar10 (CNN cells) or ptb (RNN cells); with --space nb201 also cifar100, imagenet16")
@click.option("--preset", default="paper", show_default=True, help="paper (SPEC numbers) | smoke (tiny, minutes on CPU); nb201 also cpu")
@click.option("--config", "config_file", default=None, help="JSON or YAML file of option overrides")
@click.option("--output", default=None, help="run folder (default runs/search-<task>-<time>)")
@click.option("--resume", default=None, help="continue the search in this run folder from its last checkpoint")
@click.option("--progress/--no-progress", default=True, help="tqdm progress bars")
@click.option("--download", is_flag=True, help="fetch the task's dataset first if it is missing")
@_with_search_options
def search(task, preset, config_file, output, resume, progress, download, **flags):
    """Search cells: NAO on a weight-sharing supernet (cnn-ws, rnn; --strategy random for Random-WS), the
    standalone 11-op search with --space cnn (every candidate trained from scratch; flags such as --epochs,
    --layers, --channels then describe each candidate), NAO on a NAS-Bench-201 supernet with --space nb201
    (presets paper, cpu, smoke), or a search on the NAS-Bench-201 table with --space nb201 --benchmark FILE
    (--strategy nao, random or rea; --budget queries)."""
    from . import search as ws, standalone, tabular
    from .config import build_config, config_to_dict, load_config_file, resolve
    from .monitor import Monitor
    from .runs import RunDir

    if resume:
        run, saved = _open_for_resume(resume, task, config_file, flags)
        cls, _, _ = _search_kind(saved.get("task", ""), saved.get("space"), "benchmark" in saved)
        cfg = build_config(cls, saved, {"device": flags.get("device")}, where=("config.json", "flags"))
        _check_search(cfg)  # device and --amp too
    else:
        if task is None:
            raise NaoWsError("--task is required: cifar10 (CNN cells) or ptb (RNN cells)")
        from_file = load_config_file(config_file)
        space = flags.get("space") or from_file.get("space")
        cls, presets, base = _search_kind(task, space, bool(flags.get("benchmark") or from_file.get("benchmark")))
        cfg = resolve(cls, presets, preset, config_file, {**flags, "task": task}, base=base)
        _check_search(cfg)
        if not isinstance(cfg, tabular.Config):  # a tabular search reads its table, checked above, and no dataset
            if download:
                _ensure_data(cfg.dataset or cfg.task, cfg.data_dir)
            _require_data(cfg.dataset or cfg.task, cfg.data_dir, getattr(cfg, "data_file", None))
        run = RunDir.create(output, "search", task)
    try:
        if not resume:
            run.write_config(config_to_dict(cfg))
            click.echo(f"run folder: {run.path}  (watch: tensorboard --logdir {run.path / 'tb'})", err=True)
        if cfg.space == "cnn" or isinstance(cfg, tabular.Config):
            monitor = Monitor(run.path, progress=progress)
            try:
                result = (standalone if cfg.space == "cnn" else tabular).run(cfg, run, monitor, resume=bool(resume))
            finally:
                monitor.close()
            score = {"score": result["score"]} if cfg.space == "cnn" else {
                "valid_accuracy": result["valid_accuracy"], "test_accuracy": result["test_accuracy"]}
            click.echo(json.dumps({"best": result["text"], **score, "run": str(run.path)}))
            return
        best = ws.run(cfg, run, resume=bool(resume), progress=progress)
    except USER_ERRORS:
        run.discard()
        raise
    click.echo(json.dumps({"best": best["text"], "run": str(run.path), "inherited": best["inherited"]["score"],
                           "rerank": best["rerank"] and best["rerank"]["score"]}))


@cli.command("score")
@click.option("--run", "run_path", required=True, help="the folder of a weight-sharing search (finished or not)")
@click.option("--archs", "archs_file", required=True, help="text file: one architecture's text form a line")
@click.option("--device", default=None, help="auto | cpu | cuda[:N] (default: the run's)")
@click.option("--data-dir", default=None, help="dataset root (default: the one the run used)")
@click.option("--output", default=None, help="also write the JSON lines to this file")
@click.option("--progress/--no-progress", default=True, help="tqdm progress bars")
def score_cmd(run_path, archs_file, device, data_dir, output, progress):
    """Score the architectures of ARCHS with the inherited weights of the search in RUN (its latest
    checkpoint), as the search scores its pool; print one JSON line per architecture (arch, score, ...)."""
    from . import scoring
    from .config import build_config
    from .runs import io_error, strict_json

    run, ckpt = scoring.open_run(run_path)  # a weight-sharing search's checkpoint
    saved = run.read_config()
    cls, _, _ = _search_kind(saved.get("task", ""), saved.get("space"), "benchmark" in saved)
    cfg = build_config(cls, saved, {"device": device, "data_dir": data_dir}, where=("config.json", "flags"))
    archs = scoring.read_archs(archs_file, cfg.space, run.path)
    _require_data(cfg.dataset or cfg.task, cfg.data_dir, getattr(cfg, "data_file", None))
    lines = [json.dumps(strict_json(r)) for r in scoring.score(cfg, ckpt, archs, progress)]
    if output:
        try:
            Path(output).write_text("".join(line + "\n" for line in lines))
        except OSError as e:
            raise io_error(e, f"writing --output {output}") from None
    click.echo("\n".join(lines))


@cli.command("plot")
@click.argument("arch_text", metavar="ARCH")
@click.option("--space", type=click.Choice(SPACE_CHOICES), default=None, help="expected space")
@click.option("-o", "--output", required=True, help="PNG file to write")
def plot_cmd(arch_text, space, output):
    """Draw ARCH's cells (normal and reduction, or the RNN cell) as a PNG, as shown in TensorBoard."""
    from supernet.spaces import parse_arch

    from .plot import save
    from .runs import file_above, io_error

    arch = parse_arch(arch_text, space)
    if Path(output).is_dir():
        raise NaoWsError(f"-o {output} is a folder: name the PNG file to write, e.g. {Path(output) / 'cells.png'}")
    if Path(output).suffix.lower() != ".png":
        raise NaoWsError(f"-o {output}: plot writes PNG files; name one ending in .png")
    if file_above(Path(output)) is not None:
        raise NaoWsError(f"-o {output} lies under {file_above(Path(output))}, which is a file: choose another path")
    try:
        click.echo(str(save(arch, output)))
    except OSError as e:
        raise io_error(e, f"writing {output}") from None


@cli.command("eval")
@click.option("--checkpoint", required=True, help="a checkpoint file, or a run folder (its latest checkpoint)")
@click.option("--device", default="auto", show_default=True)
@click.option("--data-dir", default=None, help="dataset root (default: the one the run used)")
def eval_cmd(checkpoint, device, data_dir):
    """Evaluate a trained network on its task's test split."""
    from .runs import load_checkpoint_file

    state = load_checkpoint_file(checkpoint)
    task = state.get("config", {}).get("task") if isinstance(state.get("config"), dict) else None
    if state.get("kind") not in ("train-cnn", "train-rnn") or task is None:
        raise NaoWsError(f"{checkpoint} is a '{state.get('kind')}' checkpoint; eval takes one written by nao-ws train")
    click.echo(json.dumps(_trainer(task).evaluate(state, device, data_dir)))


if __name__ == "__main__":
    main()
