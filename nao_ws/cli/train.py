"""``nao-ws train`` and ``nao-ws eval``: final training of a discovered cell (reference §5) and its test."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from ..config.options import RunConfig, build_config, config_to_dict, resolve
from ..config.recipes import CnnFinal, RnnFinal
from ..data.tasks import FOLDER_TASKS, IMAGE_TASKS, TASKS, TEXT_TASKS, TRAIN_TASKS
from ..errors import USER_ERRORS, NaoWsError
from ..train import training_of
from ..train.options import CnnTrainConfig, RnnTrainConfig, config_class
from .common import open_for_resume, require_data, run_options
from .options import SectionedCommand, dataclass_options, own_fields, peek, section


def _sections(args: list[str]) -> list[tuple[str, list]]:
    task = peek(args, "--task")
    out = [("Run", section(RunConfig, own_fields(RunConfig)[1:]))]
    if task not in TEXT_TASKS:
        out.append((f"Image training (--task {' | '.join(IMAGE_TASKS + FOLDER_TASKS)}; reference §5.1, §5.3)",
                    section(CnnFinal) + section(CnnTrainConfig)))
    if task not in IMAGE_TASKS + FOLDER_TASKS:
        out.append((f"Language-model training (--task {' | '.join(TEXT_TASKS)}; reference §5.2)",
                    section(RnnFinal) + section(RnnTrainConfig)))
    return out


def _defaults_from_arch(flags: dict, task: str | None) -> str | None:
    """``--arch RUN/best.json``: the space comes from the JSON and, without ``--task``, the task (and the
    data, e.g. the bundled sample of a smoke search) from the search's ``config.json`` beside it; an RNN
    cell keeps the search's ``cell_output`` unless ``--cell-output`` is given."""
    from supernet.spaces import parse_arch

    from ..runs import RunDir

    arch = flags.get("arch")
    if not arch or not Path(arch).is_file():
        return task
    try:
        obj = json.loads(Path(arch).read_bytes())
        space = (obj.get("arch") or obj).get("space")
    except (OSError, ValueError, AttributeError, RecursionError):  # not JSON: the text form, or broken
        parse_arch(arch, flags.get("space"))  # the one-line error of a broken file, before "--task is required"
        return task
    if space in ("cnn-ws", "cnn") and flags.get("space") is None:
        flags["space"] = space
    run_cfg = Path(arch).parent / "config.json"
    if run_cfg.is_file() and (task is None or space == "rnn"):
        saved = RunDir(run_cfg.parent).read_config()
        if task is None:
            task = saved.get("dataset") or saved.get("task")
            task = task if task in TASKS else None
        if space == "rnn" and flags.get("cell_output") is None and "cell_output" in saved:
            flags["cell_output"] = saved["cell_output"]  # the cell as its search scored it (reference §1.3)
    return task


@click.command(cls=SectionedCommand, sections=_sections)
@click.option("--task", type=click.Choice(TRAIN_TASKS), default=None, help="dataset / kind of network")
@run_options("train")
@click.option("--dry-run", is_flag=True, help="build the model, report its size, exit")
@click.option("--json", "as_json", is_flag=True, help="with --dry-run: print one JSON object")
@click.option("--nproc", type=click.IntRange(1), default=1, show_default=True,
              help="data-parallel processes on this machine, one per GPU (or on CPU with --device cpu), started "
                   "through torchrun's launcher; --batch-size stays the global batch")
@click.option("--dist-timeout", type=click.FloatRange(1), default=1800, show_default=True,
              help="seconds a process waits for the others before the job stops (several processes)")
@dataclass_options(CnnTrainConfig, RnnTrainConfig, exclude=("task",))
def train(task, preset, config_file, output, resume, progress, download, dry_run, as_json, nproc, dist_timeout,
          **flags):
    """Train a discovered cell from scratch (reference §5), e.g. --task cifar10 --arch RUN/best.json; on several
    GPUs with --nproc N, or on several machines under torchrun (see README)."""
    from ..monitor import Monitor
    from ..runs import RunDir
    from ..train.distributed import start
    from .launch import in_worker, launch, worker_argv

    if nproc > 1 and in_worker():
        raise NaoWsError("--nproc starts processes of its own: under torchrun, leave it out (torchrun's "
                         "--nproc-per-node says how many)")
    if download and in_worker():
        raise NaoWsError("--download in every process of a job would fetch the data many times: download it first "
                         "(nao-ws data download), then start torchrun")
    procs = start(dist_timeout) if nproc == 1 else None
    main = procs is None or procs.main
    cfg, run = _configure(task, preset, config_file, resume, flags) if main else (None, None)
    if procs is not None and procs.world > 1:  # rank 0's config (its run folder's, for --resume) for everyone
        saved = procs.broadcast(config_to_dict(cfg) if main else None)
        if not main:
            cfg = build_config(config_class(saved["task"])[0], saved, where=("the config of rank 0",))
    info = _check(cfg, procs, nproc, download, dry_run)
    if dry_run:
        if main:
            click.echo(json.dumps(info) if as_json else "\n".join(f"{k}: {v}" for k, v in info.items()))
        if procs is not None:
            procs.close()
        return
    if procs is None:  # the launcher: the processes do the rest
        launch(nproc, ["train", *worker_argv(click.get_current_context().meta["argv"])])
        return
    monitor = None
    try:
        if main and not resume:
            # the architecture itself, not the file naming it: a resume must train what this run trained
            cfg = dataclasses.replace(cfg, arch=info["arch"])
            run = RunDir.create(output, "train", cfg.task)
            run.write_config(config_to_dict(cfg))
        monitor = Monitor(run.path, progress=progress) if main else Monitor(None, progress=False, echo=False)
        result = training_of(cfg.task).train(cfg, run, monitor, resume=bool(resume), procs=procs)
    except USER_ERRORS:
        if run is not None:
            run.discard()
        raise
    finally:
        if monitor is not None:
            monitor.close()
    if main:
        click.echo(json.dumps(result))
    procs.close()


def _configure(task, preset, config_file, resume, flags):
    """The run's config, and for --resume its run folder (checked resumable)."""
    from ..runs import check_device

    if resume:
        run, saved = open_for_resume(resume, task, config_file, flags)
        if saved.get("task") not in TRAIN_TASKS:
            raise NaoWsError(f"{run.path}/config.json names no task nao-ws trains: the run folder is damaged")
        cls, _, _ = config_class(saved["task"])
        cfg = build_config(cls, saved, {"device": flags.get("device")}, where=("config.json", "flags"))
        check_device(cfg)
        return cfg, run
    task = _defaults_from_arch(flags, task)
    if task is None:
        raise NaoWsError(f"--task is required ({', '.join(TRAIN_TASKS)})")
    cls, presets, base = config_class(task)
    return resolve(cls, presets, preset, config_file, {**flags, "task": task}, base=base), None


def _check(cfg, procs, nproc: int, download: bool, dry_run: bool) -> dict:
    """Every option, the architecture and the share of the batch each process gets; but for a dry run also the
    device and the data; on every process (the first problem stops them all before anything is created).
    Returns the dry run's report."""
    import torch

    from ..data.batches import process_share
    from ..runs import check_device

    def check() -> dict:
        training = training_of(cfg.task)
        if download:
            require_data(cfg.task, cfg.data_dir, download=True)
        info = training.dry_run(cfg)
        process_share(cfg.batch_size, 0, procs.world if procs is not None else nproc)
        if dry_run:
            return info
        device = check_device(cfg)
        if procs is not None:
            procs.place(device)
        elif device.type == "cuda" and nproc > torch.cuda.device_count():
            raise NaoWsError(f"--nproc {nproc} asks for a GPU per process, and this machine has "
                             f"{torch.cuda.device_count()}: use --nproc {torch.cuda.device_count()} or fewer")
        require_data(cfg.task, cfg.data_dir)
        return info

    return check() if procs is None else procs.agree(check)


@click.command("eval")
@click.option("--checkpoint", required=True, help="a checkpoint file, or a run folder (its latest checkpoint)")
@click.option("--device", default="auto", show_default=True)
@click.option("--data-dir", default=None, help="dataset root (default: the one the run used)")
def evaluate(checkpoint, device, data_dir):
    """Evaluate a trained network on its task's test split."""
    from ..runs import load_checkpoint_file
    from ..train import training_of

    state = load_checkpoint_file(checkpoint)
    task = state.get("config", {}).get("task") if isinstance(state.get("config"), dict) else None
    if state.get("kind") not in ("train-cnn", "train-rnn") or task is None:
        raise NaoWsError(f"{checkpoint} is a '{state.get('kind')}' checkpoint; eval takes one written by nao-ws train")
    click.echo(json.dumps(training_of(task).evaluate(state, device, data_dir)))
