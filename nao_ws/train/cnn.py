"""Final training of a discovered CNN cell on CIFAR (reference §5.1) or ImageNet (reference §5.3), and of a
NAS-Bench-201 cell on CIFAR with the benchmark's own recipe (reference §8):
``nao-ws train --task cifar10 ...``, on one process or data-parallel on several (``distributed.Processes``).

``fit_candidate`` is the same training without a run folder, for the searches' short standalone trainings
(reference §3.1's top-5 re-ranking, §4's candidates). The test set (ImageNet's val/) is evaluated once, after
the last epoch, and never used to pick anything.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from supernet import optim
from supernet.cnn import autocast, train_step
from supernet.nb201 import Nb201Network
from supernet.nets import REFERENCE_CELLS, NASNetwork, multiply_adds, parameter_count
from supernet.spaces import CnnArch, Nb201Arch, format_arch, parse_arch

from ..config.options import build_config
from ..data.batches import ImageBatches, fixed_batches
from ..data.folders import FolderBatches, FolderData, folder_test_batches, load_folders
from ..data.images import ImageData, load_images
from ..data.tasks import FOLDER_TASKS, IMAGE_TASKS
from ..errors import NaoWsError
from ..monitor import Monitor
from ..runs import RunDir, check_device, load_model_state, resolve_device, seed_everything
from .distributed import SINGLE, Processes
from .options import CnnTrainConfig
from .trainer import EpochStats, Trainer, seeded

CHECKPOINT_KIND = "train-cnn"
NUM_CLASSES = {"cifar10": 10, "cifar10-sample": 10, "cifar100": 100, "imagenet": 1000}  # reference §5.1, §5.3
CIFAR_SIDE = 32  # CIFAR images are 32x32
EVAL_BATCH = 500  # CIFAR's test-time batch size: memory only, BN uses running statistics at test time
AUX_MIN_SIDE = 224  # ImageNet's aux head pools a 7x7 map (1/32 of the image) to the 2x2 its conv reads


def check_config(cfg: CnnTrainConfig) -> None:
    """Combinations no network or schedule can use (each value's own range is checked when it is read)."""
    if cfg.task not in IMAGE_TASKS + FOLDER_TASKS:
        raise NaoWsError(f"--task {cfg.task} is not an image task ({', '.join(IMAGE_TASKS + FOLDER_TASKS)})")
    if cfg.channels % 2 and cfg.space != "nb201":
        raise NaoWsError(f"--channels {cfg.channels} must be even (factorized reduce halves it)")
    if cfg.lr_schedule == "cosine" and cfg.lr_min > cfg.lr:
        raise NaoWsError(f"--lr-min {cfg.lr_min} exceeds --lr {cfg.lr}: the cosine schedule runs from --lr down to it")
    if cfg.space == "nb201":
        check_nb201(cfg)
    if cfg.task in FOLDER_TASKS:
        if cfg.image_size % 32:
            raise NaoWsError(f"--image-size {cfg.image_size} must be a multiple of 32 (the network halves it 5 "
                             "times, each time an even size)")
        if cfg.aux_weight > 0 and cfg.image_size < AUX_MIN_SIDE:
            raise NaoWsError(f"--aux-weight {cfg.aux_weight} needs --image-size {AUX_MIN_SIDE} or more (the "
                             "auxiliary head pools a 7x7 map): use --aux-weight 0 for smaller images")
        if cfg.cutout:
            raise NaoWsError(f"--cutout {cfg.cutout} is CIFAR's augmentation; ImageNet's is a random resized crop, "
                             "a flip and colour jitter: drop --cutout")


def check_nb201(cfg: CnnTrainConfig) -> None:
    """What the NAS-Bench-201 network (reference §8) cannot do: ImageNet's stem, and the NASNet-style heads."""
    if cfg.task in FOLDER_TASKS:
        raise NaoWsError(f"--space nb201 trains on CIFAR (the benchmark's cifar10 / cifar100), not --task {cfg.task}: "
                         "ImageNet training takes a cnn or cnn-ws cell")
    if not cfg.arch:
        raise NaoWsError("--space nb201 needs --arch: a NAS-Bench-201 cell string (|op~0|+|op~0|op~1|+|...|) or a "
                         "search's best.json")
    for flag, value, plain in (("--aux-weight", cfg.aux_weight, 0.0), ("--drop-path-keep", cfg.drop_path_keep, 1.0),
                               ("--head-keep", cfg.head_keep, 1.0)):
        if value != plain:
            raise NaoWsError(f"{flag} {value}: the NAS-Bench-201 network has no auxiliary head, drop-path or dropout "
                             f"(reference §8); leave {flag} out")


def resolve_arch(cfg: CnnTrainConfig) -> CnnArch | Nb201Arch:
    return parse_arch(cfg.arch or REFERENCE_CELLS.get(cfg.space, ""), cfg.space)


def build_model(arch: CnnArch | Nb201Arch, cfg: CnnTrainConfig, num_classes: int) -> NASNetwork | Nb201Network:
    if isinstance(arch, Nb201Arch):
        return Nb201Network(arch, cfg.layers, cfg.channels, num_classes)
    return NASNetwork.from_recipe(arch, cfg, num_classes, stem="imagenet" if cfg.task in FOLDER_TASKS else "cifar")


def input_side(cfg: CnnTrainConfig) -> int:
    return cfg.image_size if cfg.task in FOLDER_TASKS else CIFAR_SIDE


def dry_run(cfg: CnnTrainConfig) -> dict:
    """Build the network on the meta device (no memory, no data) and report its size: parameters (the aux
    head's apart, as the papers count) and multiply-adds of one image in inference."""
    check_config(cfg)
    arch = resolve_arch(cfg)
    with torch.device("meta"):
        model = build_model(arch, cfg, NUM_CLASSES[cfg.task])
    return {"task": cfg.task, "space": arch.space, "arch": format_arch(arch), "layers": cfg.layers,
            "channels": cfg.channels, "params": parameter_count(model),
            "params_with_aux": parameter_count(model, aux=True), "image_size": input_side(cfg),
            "multiply_adds": multiply_adds(model, input_side(cfg))}


def load_data(cfg: CnnTrainConfig) -> ImageData | FolderData:
    """The training split and the test split (ImageNet's val/) of ``cfg.task``."""
    if cfg.task in FOLDER_TASKS:
        return load_folders(cfg.task, cfg.data_dir)
    return load_images(cfg.task, cfg.data_dir, purpose="final")


def lr_schedule(optimizer: torch.optim.Optimizer, cfg: CnnTrainConfig):
    """Cosine from --lr to --lr-min over the epochs (reference §5.1), or --lr x --lr-gamma^epoch (§5.3)."""
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs, eta_min=cfg.lr_min)


# -- the training loop -------------------------------------------------------------------------------------

class CnnTrainer(Trainer):
    """Model, optimiser, schedule and training batches of one training: ``state_dict`` is what a checkpoint
    needs to continue bit for bit (with ``runs.rng_state``). Data-parallel: ``net`` is the model under DDP, each
    process trains on its share of every global batch and the step results are averaged over the processes."""

    kind = CHECKPOINT_KIND

    def __init__(self, arch: CnnArch, data: ImageData | FolderData, cfg: CnnTrainConfig, device: torch.device,
                 seed: int, run: RunDir | None = None, monitor: Monitor | None = None, procs: Processes = SINGLE):
        super().__init__(cfg, run, monitor, procs)
        self.arch, self.device, self.data = arch, device, data
        self.amp = cfg.amp and device.type == "cuda"
        self.channels_last = cfg.channels_last and device.type == "cuda"
        self.model = build_model(arch, cfg, data.num_classes).to(device)
        if self.channels_last or (procs.world > 1 and device.type == "cpu"):
            # on CPU the network runs channels-last anyway; weights alike give DDP the gradient layout it expects
            self.model.use_channels_last()
        self.net = procs.wrap(self.model, device, cfg.sync_bn)
        # fused SGD: a non-finite step is skipped on the device, so a step never waits for the GPU
        self.optimizer = optim.sgd(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.decay(), nesterov=cfg.nesterov)
        self.scheduler = lr_schedule(self.optimizer, cfg)
        if isinstance(data, FolderData):
            self.batches = FolderBatches(data.train, cfg.batch_size, data.mean, data.std, image_size=cfg.image_size,
                                         workers=cfg.data_workers, device=device, channels_last=self.channels_last,
                                         generator_seed=seed, rank=procs.rank, world=procs.world)
        else:
            self.batches = ImageBatches(data.train, cfg.batch_size, data.mean, data.std, train=True,
                                        cutout=cfg.cutout, device=device, generator_seed=seed, rank=procs.rank,
                                        world=procs.world)
        self.epoch = 0
        self.record: dict = {}  # the last epoch's

    @property
    def step(self) -> int:
        return self.epoch

    def identity(self) -> dict:
        return {"arch": format_arch(self.arch)}

    def finished(self) -> bool:
        return self.epoch >= self.cfg.epochs

    def position(self) -> str:
        return f"epoch {self.epoch}"

    def train_epoch(self) -> dict:
        """One epoch; returns mean train loss and accuracy, the epoch's lr and the skipped (non-finite) steps."""
        cfg, steps = self.cfg, len(self.batches)
        lr = self.optimizer.param_groups[0]["lr"]
        stats = EpochStats(cfg.max_nan_steps)
        bar = self.monitor.bar(total=steps, desc=f"epoch {self.epoch + 1}/{cfg.epochs}")
        average = self.procs.average if self.procs.world > 1 else None
        for i, (x, y) in enumerate(self.batches):
            progress = (self.epoch * steps + i + 1) / (cfg.epochs * steps)  # drop-path schedule (reference §5.1)
            r = train_step(self.net, self.optimizer, x, y, grad_clip=cfg.grad_clip, aux_weight=cfg.aux_weight,
                           progress=progress, amp=self.amp, sync=False, label_smoothing=cfg.label_smoothing,
                           average=average)
            stats.add(r.finite, r.loss, r.acc)
            bar.update()
            if not stats.pending and stats.n:  # results just read: showing them waits for nothing
                bar.set_postfix(loss=f"{stats.loss / stats.n:.3f}")
        bar.close()
        self.scheduler.step()
        self.epoch += 1
        means = stats.means()
        return {"epoch": self.epoch, "train_loss": means["loss"], "train_acc": means["acc"], "lr": lr,
                "skipped_steps": means["nan_skipped"]}

    def end_epoch(self, record: dict) -> None:
        self.record = record
        if self.run is None:
            return
        self.run.append_jsonl("metrics.jsonl", record)
        self.monitor.scalars({"train/loss": record["train_loss"], "train/acc": record["train_acc"],
                              "lr": record["lr"]}, self.epoch)
        self.monitor.write(f"epoch {self.epoch}/{self.cfg.epochs}: train loss {record['train_loss']:.4f} "
                           f"acc {record['train_acc']:.4f} lr {record['lr']:.5f}")

    def lower_lr(self, factor: float) -> None:
        """The learning rate and the rest of its schedule."""
        for group in self.optimizer.param_groups:
            group["lr"] *= factor
        self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]

    def evaluate(self, images) -> dict:
        """Accuracy and loss on ``images``, each process evaluating its share."""
        batches = test_batches(self.data, images, self.cfg, self.device, self.channels_last, self.procs)
        return evaluate_model(self.model, batches, self.amp, self.procs)

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


def test_batches(data: ImageData | FolderData, images, cfg: CnnTrainConfig, device: torch.device,
                 channels_last: bool, procs: Processes = SINGLE):
    """``images`` (a test split) in plain batches on ``device``: this process's share of them. ImageNet's come
    in batches of the per-process training batch, which fits in memory by construction."""
    if isinstance(data, FolderData):
        return folder_test_batches(images, max(1, cfg.batch_size // procs.world), data.mean, data.std,
                                   image_size=cfg.image_size, workers=cfg.data_workers, device=device,
                                   channels_last=channels_last, rank=procs.rank, world=procs.world)
    return fixed_batches(images, EVAL_BATCH, data.mean, data.std, device, rank=procs.rank, world=procs.world)


def evaluate_model(model: NASNetwork, batches, amp: bool = False, procs: Processes = SINGLE) -> dict:
    """Top-1 and top-5 accuracy and mean loss over batches, BN with running statistics; the sums of every
    process's batches. Sums stay on the device until the end: one read."""
    model.eval()
    device = next(model.parameters()).device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # top-1 correct, top-5 correct, loss, images
    with torch.inference_mode(), autocast(device, amp):
        for x, y in batches:
            logits = model(x)[0].float()
            top5 = logits.topk(min(5, logits.shape[1]), 1).indices == y[:, None]
            sums[0] += top5[:, 0].sum()
            sums[1] += top5.any(1).sum()
            sums[2] += F.cross_entropy(logits, y, reduction="sum")
            sums[3] += len(y)
    correct, correct5, loss, n = procs.total(sums).tolist()
    return {"acc": correct / n, "top5_acc": correct5 / n, "loss": loss / n}


def train(cfg: CnnTrainConfig, run: RunDir | None, monitor: Monitor, resume: bool, procs: Processes = SINGLE) -> dict:
    """Train ``cfg.arch`` on the full training split, checkpointing every epoch; test once at the end. Every
    process of a data-parallel training calls it; rank 0 holds the run folder and returns the result."""
    check_config(cfg)
    arch, device = resolve_arch(cfg), procs.place(check_device(cfg))
    seed_everything(cfg.seed, cfg.deterministic)
    data = load_data(cfg)
    trainer = CnnTrainer(arch, data, cfg, device, cfg.seed, run=run, monitor=monitor, procs=procs)
    procs.seed(cfg.seed)
    if resume:
        trainer.resume()
        monitor.drop_events_from(trainer.epoch + 1)  # TensorBoard steps are epochs
        if run is not None:
            run.log(f"resumed after epoch {trainer.epoch}" + _on(procs))
    else:
        if run is not None:
            run.log(f"training {format_arch(arch)} ({arch.space}), N={cfg.layers}, F={cfg.channels}, "
                    f"{parameter_count(trainer.model) / 1e6:.2f}M params, on {device}" + _on(procs))
        trainer.checkpoint()  # epoch 0: a divergence in the first epoch has something to roll back to
    trainer.fit()
    test = trainer.evaluate(data.valid)
    if run is None:  # another process of a data-parallel training: rank 0 reports
        return {}
    last = run.read_jsonl("metrics.jsonl")[-1]
    result = {"task": cfg.task, "space": arch.space, "arch": format_arch(arch), "epochs": trainer.epoch,
              "params": parameter_count(trainer.model), "params_with_aux": parameter_count(trainer.model, aux=True),
              "train_loss": last["train_loss"], "train_acc": last["train_acc"],
              "test_loss": test["loss"], "test_acc": test["acc"]}
    if cfg.task in FOLDER_TASKS:
        result["test_top5_acc"] = test["top5_acc"]
    monitor.scalars({"test/loss": test["loss"], "test/acc": test["acc"]}, trainer.epoch)
    run.wait()  # the last checkpoint is on disk, or its error raised, before the run says it is done
    run.write_json("metrics.json", result)
    run.log(f"done: test accuracy {test['acc']:.4f} after {trainer.epoch} epochs")
    return result


def fit_candidate(arch: CnnArch, data: ImageData, cfg: CnnTrainConfig, device: torch.device | str, seed: int,
                  monitor: Monitor | None = None) -> dict:
    """Train one architecture from scratch on ``data.train`` (``cfg``'s recipe, e.g. a CANDIDATE_PRESETS
    entry) and evaluate it on ``data.valid``; no run folder (the last checkpoint is kept in memory). torch
    runs seeded from ``seed`` on a fork of its generators: the caller's random state is left untouched."""
    check_config(cfg)
    device = torch.device(device)
    start = time.time()
    with seeded(seed, device):
        trainer = CnnTrainer(arch, data, cfg, device, seed, monitor=monitor)
        trainer.checkpoint()
        trainer.fit()
        valid = trainer.evaluate(data.valid)
    return {"valid_acc": valid["acc"], "valid_loss": valid["loss"], "train_loss": trainer.record["train_loss"],
            "train_acc": trainer.record["train_acc"], "params": parameter_count(trainer.model),
            "seconds": time.time() - start}


def evaluate(state: dict, device: str, data_dir: str | None) -> dict:
    """``nao-ws eval``: the test accuracy of a checkpoint written by :func:`train`."""
    if state.get("kind") != CHECKPOINT_KIND or "trainer" not in state:
        raise NaoWsError(f"not a {CHECKPOINT_KIND} checkpoint (kind '{state.get('kind')}')")
    cfg = build_config(CnnTrainConfig, state["config"], {"data_dir": data_dir}, where=("checkpoint config", "flags"))
    arch = resolve_arch(cfg)
    dev = resolve_device(device)
    data = load_data(cfg)
    model = build_model(arch, cfg, data.num_classes)
    load_model_state(model, state["trainer"]["model"], "the checkpoint")
    model.to(dev)
    test = evaluate_model(model, test_batches(data, data.valid, cfg, dev, channels_last=False))
    result = {"task": cfg.task, "arch": format_arch(arch), "epoch": state["trainer"]["epoch"],
              "params": parameter_count(model), "test_loss": test["loss"], "test_acc": test["acc"]}
    if cfg.task in FOLDER_TASKS:
        result["test_top5_acc"] = test["top5_acc"]
    return result


def _on(procs: Processes) -> str:
    return f", {procs.world} processes" if procs.world > 1 else ""
