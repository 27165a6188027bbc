"""``nao-ws train`` and ``nao-ws eval``: final training of a discovered cell (reference §5) and its test."""
from __future__ import annotations

import json

import click

from .. import api
from ..config.options import RunConfig
from ..config.recipes import CnnFinal, RnnFinal
from ..data.tasks import FOLDER_TASKS, IMAGE_TASKS, TEXT_TASKS, TRAIN_TASKS
from ..errors import NaoWsError
from ..train.options import CnnTrainConfig, RnnTrainConfig
from .common import run_options
from .options import FloatRange, IntRange, SectionedCommand, dataclass_options, own_fields, peek, section


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


@click.command(cls=SectionedCommand, sections=_sections)
@click.option("--task", type=click.Choice(TRAIN_TASKS), default=None, help="dataset / kind of network")
@run_options("train")
@click.option("--dry-run", is_flag=True, help="build the model, report its size, exit")
@click.option("--json", "as_json", is_flag=True, help="with --dry-run: print one JSON object")
@click.option("--nproc", type=IntRange(1), default=1, show_default=True,
              help="data-parallel processes on this machine, one per GPU (or on CPU with --device cpu), started "
                   "through torchrun's launcher; --batch-size stays the global batch")
@click.option("--dist-timeout", type=FloatRange(1), default=1800, show_default=True,
              help="seconds a process waits for the others before the job stops (several processes)")
@dataclass_options(CnnTrainConfig, RnnTrainConfig, exclude=("task",))
def train(task, preset, config_file, output, resume, progress, download, dry_run, as_json, nproc, dist_timeout,
          **flags):
    """Train a discovered cell from scratch (reference §5), e.g. --task cifar10 --arch RUN/best.json; on several
    GPUs with --nproc N, or on several machines under torchrun (see README)."""
    from ..train.distributed import start
    from .launch import in_worker, launch, worker_argv

    if nproc > 1 and in_worker():
        raise NaoWsError("--nproc starts processes of its own: under torchrun, leave it out (torchrun's "
                         "--nproc-per-node says how many)")
    if download and in_worker():
        raise NaoWsError("--download in every process of a job would fetch the data many times: download it first "
                         "(nao-ws data download), then start torchrun")
    procs = start(dist_timeout) if nproc == 1 else None
    result = api.train(task, preset=preset, config=config_file, output=output, resume=resume, progress=progress,
                       download=download, dry_run=dry_run, procs=procs, nproc=nproc, **flags)
    if procs is None and not dry_run:  # the launcher: checked, the processes do the rest
        launch(nproc, ["train", *worker_argv(click.get_current_context().meta["argv"])])
        return
    if procs is None or procs.main:
        info = result.metrics
        click.echo(json.dumps(info) if as_json or not dry_run else "\n".join(f"{k}: {v}" for k, v in info.items()))
    if procs is not None:
        procs.close()


EVAL_NEEDS = {"train-cnn": ("model", "epoch"), "train-rnn": ("model", "best_model", "best_loss", "epoch")}


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
    trainer = state.get("trainer")
    missing = [k for k in EVAL_NEEDS[state["kind"]] if not isinstance(trainer, dict) or k not in trainer]
    if missing:
        raise NaoWsError(f"{checkpoint} holds no '{missing[0]}' of the trained network: it is damaged or was not "
                         "written by nao-ws train; evaluate another checkpoint of the run")
    click.echo(json.dumps(training_of(task).evaluate(state, device, data_dir)))
