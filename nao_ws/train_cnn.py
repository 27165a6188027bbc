"""Final training of a discovered CNN cell on CIFAR (SPEC 5.1): ``nao-ws train --task cifar10 ...``.

``fit_candidate`` is the same training loop without a run folder, for the search loops' short standalone
trainings (SPEC 3.1's top-5 re-ranking, SPEC 4's candidate training); ``CANDIDATE_PRESETS`` holds their
recipes. The test set is evaluated once, after the last epoch, and never used to pick anything.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from supernet import optim
from supernet.cnn import autocast, train_step
from supernet.nets import REFERENCE_CELLS, NASNetwork, parameter_count
from supernet.spaces import CnnArch, format_arch, parse_arch

from .config import RunConfig, build_config, config_to_dict, option
from .datasets import IMAGE_TASKS, ImageBatches, ImageData, fixed_batches, load_images
from .errors import NaoWsError
from .monitor import Monitor
from .recipes import CnnFinal
from .runs import (RunDir, check_device, load_model_state, resolve_device, rng_state, seed_everything,
                   set_rng_state)
from .training import MAX_NAN_STEPS, ROLLBACK_LR_FACTOR, Checkpoints, Diverged, EpochStats, next_rollback, seeded

CHECKPOINT_KIND = "train-cnn"
NUM_CLASSES = {"cifar10": 10, "cifar10-sample": 10, "cifar100": 100}  # SPEC 5.1
EVAL_BATCH = 500  # test-time batch size: memory only, BN uses running statistics at test time


@dataclass(frozen=True)
class Config(RunConfig, CnnFinal):
    """``nao-ws train`` for CIFAR: the SPEC 5.1 recipe and the architecture; every field is a flag."""

    arch: str = option("", "architecture: text form, JSON or a JSON file (default: the space's SPEC 5.1 reference "
                           "cell, NAONet-B for cnn-ws, NAONet-A for cnn)")
    space: str = option("cnn-ws", "search space of --arch: cnn-ws (5 ops) or cnn (11 ops)")
    max_nan_steps: int = option(MAX_NAN_STEPS, "non-finite losses in a row before rolling back to the last checkpoint")
    amp: bool = option(False, "bf16 autocast (CUDA only)")
    channels_last: bool = option(False, "channels-last memory format on CUDA (CNNs always run channels-last on CPU, "
                                        "where it is faster)")


# paper = the dataclass defaults (SPEC 5.1); smoke = a minute on 2 CPU cores with --task cifar10-sample
PRESETS = {
    "paper": {},
    "smoke": {"layers": 1, "channels": 8, "epochs": 3, "batch_size": 50, "cutout": 8},
}

# recipes of fit_candidate's callers, as overrides of Config; sizes, epochs and lr come from the caller's config
CANDIDATE_PRESETS = {
    # SPEC 4: every candidate of the standalone search (ref-TF's script: drop-path keep 0.7, no cutout)
    "standalone": {"drop_path_keep": 0.7, "weight_decay": 5e-4, "cutout": 0},
}


def task_defaults(task: str) -> dict:
    """No per-task overrides: CIFAR-10 and CIFAR-100 share the SPEC 5.1 recipe."""
    return {}


def check_config(cfg: Config) -> None:
    """Reject values no network or schedule can use, with the flag to fix."""
    problems = []
    if cfg.task not in IMAGE_TASKS:
        problems.append(f"--task {cfg.task} is not an image task ({', '.join(IMAGE_TASKS)})")
    if cfg.space not in REFERENCE_CELLS:
        problems.append(f"--space {cfg.space} is not a CNN space (cnn-ws or cnn)")
    if cfg.layers < 1:
        problems.append(f"--layers {cfg.layers} must be at least 1")
    if cfg.channels < 2 or cfg.channels % 2:
        problems.append(f"--channels {cfg.channels} must be even and at least 2 (factorized reduce halves it)")
    if cfg.max_nan_steps < 0:
        problems.append(f"--max-nan-steps {cfg.max_nan_steps} must be 0 or more")
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            problems.append(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be at least 1")
    if not cfg.lr > 0 or not 0 <= cfg.lr_min <= cfg.lr:
        problems.append(f"need --lr > 0 and 0 <= --lr-min <= --lr, got {cfg.lr} and {cfg.lr_min}")
    if not 0 <= cfg.momentum < 1:
        problems.append(f"--momentum {cfg.momentum} must be in [0, 1)")
    if cfg.decay() < 0 or cfg.aux_weight < 0 or not cfg.grad_clip > 0:
        problems.append("--weight-decay and --aux-weight must be >= 0 and --grad-clip > 0")
    if not 0 <= cfg.cutout <= 32:
        problems.append(f"--cutout {cfg.cutout} must be between 0 and 32 (the image side)")
    for name in ("drop_path_keep", "head_keep"):
        if not 0 < getattr(cfg, name) <= 1:
            problems.append(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be in (0, 1]")
    if problems:
        raise NaoWsError("; ".join(problems))


def resolve_arch(cfg: Config) -> CnnArch:
    return parse_arch(cfg.arch or REFERENCE_CELLS.get(cfg.space, ""), cfg.space)


def build_model(arch: CnnArch, cfg: Config, num_classes: int) -> NASNetwork:
    return NASNetwork.from_recipe(arch, cfg, num_classes)


def dry_run(cfg: Config) -> dict:
    """Build the network on the meta device (no memory, no data) and report its size."""
    check_config(cfg)
    arch = resolve_arch(cfg)
    with torch.device("meta"):
        model = build_model(arch, cfg, NUM_CLASSES[cfg.task])
    return {"task": cfg.task, "space": arch.space, "arch": format_arch(arch), "layers": cfg.layers,
            "channels": cfg.channels, "params": parameter_count(model),
            "params_with_aux": parameter_count(model, aux=True)}


# -- the training loop -------------------------------------------------------------------------------------

class Trainer:
    """Model, optimiser, cosine schedule and the training batches of one run, and its checkpoints (the run
    folder's, or without one the last in memory): ``state_dict`` is what a checkpoint needs to continue bit for
    bit (with ``runs.rng_state``). A divergence rolls back to the last checkpoint (``training``'s policy)."""

    def __init__(self, arch: CnnArch, data: ImageData, cfg: Config, device: torch.device, seed: int,
                 run: RunDir | None = None):
        self.arch, self.cfg, self.device = arch, cfg, device
        self.amp = cfg.amp and device.type == "cuda"
        self.model = build_model(arch, cfg, data.num_classes).to(device)
        if cfg.channels_last and device.type == "cuda":
            self.model.use_channels_last()
        # fused SGD: a non-finite step is skipped on the device, so a step never waits for the GPU
        self.optimizer = optim.sgd(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.decay())
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, cfg.epochs, eta_min=cfg.lr_min)
        self.batches = ImageBatches(data.train, cfg.batch_size, data.mean, data.std, train=True, cutout=cfg.cutout,
                                    device=device, generator_seed=seed)
        self.data = data
        self.epoch = 0
        self.rollbacks = 0
        self.run, self.checkpoints = run, Checkpoints(run)

    def fit(self, monitor: Monitor | None, on_epoch=None) -> dict:
        """Train until ``cfg.epochs``, calling ``on_epoch(record)`` and checkpointing after each epoch."""
        record = {}
        while self.epoch < self.cfg.epochs:
            start = time.time()
            try:
                record = self.train_epoch(monitor)
            except Diverged as e:
                self.roll_back(str(e), monitor)
                continue
            record["seconds"] = round(time.time() - start, 3)
            if on_epoch is not None:
                on_epoch(record)
            self.checkpoint()
        return record

    def train_epoch(self, monitor: Monitor | None) -> dict:
        """One epoch; returns mean train loss and accuracy, the epoch's lr and the skipped (non-finite) steps."""
        cfg, steps = self.cfg, len(self.batches)
        lr = self.optimizer.param_groups[0]["lr"]
        stats = EpochStats(cfg.max_nan_steps)
        bar = monitor.bar(total=steps, desc=f"epoch {self.epoch + 1}/{cfg.epochs}") if monitor else None
        for i, (x, y) in enumerate(self.batches):
            progress = (self.epoch * steps + i + 1) / (cfg.epochs * steps)  # drop-path schedule (SPEC 5.1)
            r = train_step(self.model, self.optimizer, x, y, grad_clip=cfg.grad_clip, aux_weight=cfg.aux_weight,
                           progress=progress, amp=self.amp, sync=False)
            stats.add(r.finite, r.loss, r.acc)
            if bar is not None:
                bar.update()
                if not stats.pending and stats.n:  # results just read: showing them waits for nothing
                    bar.set_postfix(loss=f"{stats.loss / stats.n:.3f}")
        if bar is not None:
            bar.close()
        self.scheduler.step()
        self.epoch += 1
        means = stats.means()
        return {"epoch": self.epoch, "train_loss": means["loss"], "train_acc": means["acc"], "lr": lr,
                "skipped_steps": means["nan_skipped"]}

    def roll_back(self, why: str, monitor: Monitor | None) -> None:
        """Back to the last checkpoint, the learning rate (and the rest of its schedule) lowered."""
        rollbacks = next_rollback(self.rollbacks, why)
        self.restore(self.checkpoints.latest())
        self.rollbacks = rollbacks
        for group in self.optimizer.param_groups:
            group["lr"] *= ROLLBACK_LR_FACTOR
        self.scheduler.base_lrs = [lr * ROLLBACK_LR_FACTOR for lr in self.scheduler.base_lrs]
        message = (f"{why}: rolled back to epoch {self.epoch}, "
                   f"lr lowered to {self.optimizer.param_groups[0]['lr']:g}")
        if monitor is not None:
            monitor.write(message)
        if self.run is not None:
            self.run.log("WARNING " + message)

    def evaluate(self, images) -> dict:
        return evaluate_model(self.model, fixed_batches(images, EVAL_BATCH, self.data.mean, self.data.std,
                                                        self.device), self.amp)

    def checkpoint(self) -> None:
        self.checkpoints.save({"kind": CHECKPOINT_KIND, "config": config_to_dict(self.cfg),
                               "arch": format_arch(self.arch), "trainer": self.state_dict(), "rng": rng_state()},
                              self.epoch, logs=("metrics.jsonl",))

    def restore(self, state: dict) -> None:
        if state.get("kind") != CHECKPOINT_KIND:
            where = self.run.path if self.run is not None else "the checkpoint"
            raise NaoWsError(f"{where} holds a '{state.get('kind')}' checkpoint, not a {CHECKPOINT_KIND} one")
        self.load_state_dict(state["trainer"])
        set_rng_state(state["rng"])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "rollbacks": self.rollbacks, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        load_model_state(self.model, state["model"], "the checkpoint")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.batches.load_state_dict(state["batches"])
        self.epoch, self.rollbacks = state["epoch"], state["rollbacks"]


def evaluate_model(model: NASNetwork, batches: list, amp: bool = False) -> dict:
    """Accuracy and mean loss over fixed batches, BN with running statistics."""
    model.eval()
    correct = loss = 0.0
    n = 0
    with torch.inference_mode(), autocast(batches[0][0].device, amp):
        for x, y in batches:
            logits = model(x)[0].float()
            correct += (logits.argmax(1) == y).sum().item()
            loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
            n += len(y)
    return {"acc": correct / n, "loss": loss / n}


def _setup(cfg: Config) -> tuple[CnnArch, torch.device]:
    check_config(cfg)
    arch = resolve_arch(cfg)
    device = check_device(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    return arch, device


def train(cfg: Config, run: RunDir, monitor: Monitor, resume: bool) -> dict:
    """Train ``cfg.arch`` on the full training split, checkpointing every epoch; test once at the end."""
    arch, device = _setup(cfg)
    data = load_images(cfg.task, cfg.data_dir, purpose="final")
    trainer = Trainer(arch, data, cfg, device, cfg.seed, run=run)
    state = run.resume_checkpoint() if resume else None
    if state is not None:
        trainer.restore(state)
        run.restore_logs(state)
        monitor.drop_events_from(trainer.epoch + 1)  # TensorBoard steps are epochs
        run.log(f"resumed after epoch {trainer.epoch}")
    else:
        run.log(f"training {format_arch(arch)} ({arch.space}), N={cfg.layers}, F={cfg.channels}, "
                f"{parameter_count(trainer.model) / 1e6:.2f}M params, on {device}")
        trainer.checkpoint()  # epoch 0: a divergence in the first epoch has something to roll back to

    def on_epoch(record: dict) -> None:
        run.append_jsonl("metrics.jsonl", record)
        monitor.scalars({"train/loss": record["train_loss"], "train/acc": record["train_acc"], "lr": record["lr"]},
                        trainer.epoch)
        monitor.write(f"epoch {trainer.epoch}/{cfg.epochs}: train loss {record['train_loss']:.4f} "
                      f"acc {record['train_acc']:.4f} lr {record['lr']:.5f}")

    trainer.fit(monitor, on_epoch)
    test = trainer.evaluate(data.valid)
    last = run.read_jsonl("metrics.jsonl")[-1]
    result = {"task": cfg.task, "space": arch.space, "arch": format_arch(arch), "epochs": trainer.epoch,
              "params": parameter_count(trainer.model), "params_with_aux": parameter_count(trainer.model, aux=True),
              "train_loss": last["train_loss"], "train_acc": last["train_acc"],
              "test_loss": test["loss"], "test_acc": test["acc"]}
    monitor.scalars({"test/loss": test["loss"], "test/acc": test["acc"]}, trainer.epoch)
    run.wait()  # the last checkpoint is on disk, or its error raised, before the run says it is done
    run.write_json("metrics.json", result)
    run.log(f"done: test accuracy {test['acc']:.4f} after {trainer.epoch} epochs")
    return result


def fit_candidate(arch: CnnArch, data: ImageData, cfg: Config, device: torch.device | str, seed: int,
                  monitor: Monitor | None = None) -> dict:
    """Train one architecture from scratch on ``data.train`` (``cfg``'s recipe, e.g. a CANDIDATE_PRESETS
    entry) and evaluate it on ``data.valid``; no run folder (the last checkpoint is kept in memory). torch
    runs seeded from ``seed`` on a fork of its generators: the caller's random state is left untouched."""
    check_config(cfg)
    device = torch.device(device)
    start = time.time()
    with seeded(seed, device):
        trainer = Trainer(arch, data, cfg, device, seed)
        trainer.checkpoint()
        record = trainer.fit(monitor)
        valid = trainer.evaluate(data.valid)
    return {"valid_acc": valid["acc"], "valid_loss": valid["loss"], "train_loss": record["train_loss"],
            "train_acc": record["train_acc"], "params": parameter_count(trainer.model),
            "seconds": time.time() - start}


def evaluate(state: dict, device: str, data_dir: str | None) -> dict:
    """``nao-ws eval``: the test accuracy of a checkpoint written by :func:`train`."""
    if state.get("kind") != CHECKPOINT_KIND or "trainer" not in state:
        raise NaoWsError(f"not a {CHECKPOINT_KIND} checkpoint (kind '{state.get('kind')}')")
    cfg = build_config(Config, state["config"], {"data_dir": data_dir}, where=("checkpoint config", "flags"))
    arch = resolve_arch(cfg)
    dev = resolve_device(device)
    data = load_images(cfg.task, cfg.data_dir, purpose="final")
    model = build_model(arch, cfg, data.num_classes)
    load_model_state(model, state["trainer"]["model"], "the checkpoint")
    model.to(dev)
    test = evaluate_model(model, fixed_batches(data.valid, EVAL_BATCH, data.mean, data.std, dev))
    return {"task": cfg.task, "arch": format_arch(arch), "epoch": state["trainer"]["epoch"],
            "params": parameter_count(model), "test_loss": test["loss"], "test_acc": test["acc"]}
