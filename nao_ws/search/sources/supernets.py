"""The weight-sharing supernet of each space with its data and optimiser: one training epoch, scoring of a
list of architectures with inherited weights, and short standalone training for the final re-ranking.

``CnnWs`` (CIFAR-10, ``cnn-ws`` space, reference §3.1), ``Nb201Ws`` (CIFAR-10, ``nb201`` space, reference §8)
and ``RnnWs`` (PTB, ``rnn`` space, reference §3.2) share one interface, which ``supernet.SupernetSource``
drives. Every score is "higher is better": accuracy or minus the loss for images, minus the validation loss
for language models.
"""
from __future__ import annotations

import copy
import math
import time
from functools import partial
from typing import Callable

import torch

from supernet import cnn, nb201, nets, ops, optim, rnn, rnn_graphs
from supernet.spaces import get_space

from ...config import recipes
from ...config.options import resolve
from ...data import batches as image_batches
from ...data.images import load_images
from ...data.text import batchify, check_sizes, load_corpus
from ...monitor import Monitor
from ...runs import load_model_state
from ...train import cnn as train_cnn, rnn as train_rnn
from ...train.options import CNN_PRESETS, RNN_PRESETS, CnnTrainConfig, RnnTrainConfig
from ...train.trainer import EpochStats, seeded

SCORE_CHUNK = 25  # architectures per progress-bar update while scoring
PTB_REWARD = 80.0  # ENAS's PTB reward: this / validation perplexity (src/ptb/ptb_enas_controller.py)


def sgdr_lr(epoch: int, lr_max: float, lr_min: float, t0: int, t_mult: int) -> float:
    """Cosine annealing with warm restarts (SGDR), per epoch (reference §3.1 `paper`: T0 = 10, Tmul = 2)."""
    period, start = t0, 0
    while epoch >= start + period:
        start, period = start + period, period * t_mult
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * (epoch - start) / period))


class CnnWs:
    """The CIFAR weight-sharing supernet, its optimiser and data (reference §3.1)."""

    def __init__(self, cfg, device: torch.device):
        self.cfg, self.device = cfg, device
        source = cfg.dataset or cfg.task
        self.data = load_images(source, cfg.data_dir, purpose="search", npz_path=cfg.data_file)
        self.batches = image_batches.ImageBatches(self.data.train, cfg.batch_size, self.data.mean, self.data.std,
                                             train=True, device=device, generator_seed=cfg.seed)
        self.dev = image_batches.fixed_batches(self.data.valid, cfg.score_batch, self.data.mean, self.data.std, device,
                                          limit=cfg.score_images)
        # --score-bn recalibrate: the first training images, un-augmented, the same for every architecture
        self.calibration = image_batches.fixed_batches(self.data.train, cfg.score_batch, self.data.mean, self.data.std,
                                                  device, limit=cfg.calib_images) if cfg.score_bn == "recalibrate" else None
        model = self.build_model()
        self.model = (model if cfg.bn_affine else ops.drop_bn_affine(model)).to(device)
        self.optimizer = self.build_optimizer(self.model)
        self.subnets: list[tuple] = []  # after a few-shot split: (model, optimiser) per value of the decision

    def build_model(self):
        model = cnn.Supernet.from_recipe(self.cfg.space, self.cfg, self.data.num_classes)
        return model.use_channels_last() if self.cfg.channels_last else model

    def build_optimizer(self, model):
        cfg = self.cfg
        return optim.sgd(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def split(self) -> None:
        """Few-shot supernets (Zhao et al. 2021): one copy of the supernet and its optimiser state per value of
        decision ``few_shot_decision``; from now on an architecture trains and is scored in its copy."""
        state = self.optimizer.state_dict()
        self.subnets = []
        for _ in range(get_space(self.cfg.space).decision_sizes()[self.cfg.few_shot_decision]):
            model = copy.deepcopy(self.model)
            optimizer = self.build_optimizer(model)
            optimizer.load_state_dict(state)
            self.subnets.append((model, optimizer))

    def part(self, arch) -> tuple:
        """(model, optimiser) that train and score ``arch``: its few-shot copy once split."""
        if not self.subnets:
            return self.model, self.optimizer
        return self.subnets[arch.to_list()[self.cfg.few_shot_decision]]

    def lr(self, epoch: int) -> float:
        cfg = self.cfg
        return sgdr_lr(epoch, cfg.lr, cfg.lr_min, cfg.t0, cfg.t_mult)

    def train_epoch(self, epoch: int, pick: Callable, lr_scale: float, monitor: Monitor) -> dict:
        cfg = self.cfg
        if cfg.few_shot_decision >= 0 and epoch == cfg.few_shot_epoch and not self.subnets:
            self.split()
        lr = lr_scale * self.lr(epoch)
        for optimizer in [self.optimizer] + [o for _, o in self.subnets]:
            for group in optimizer.param_groups:
                group["lr"] = lr
        steps = EpochStats(cfg.max_nan_steps)
        aux_weight = getattr(cfg, "aux_weight", 0.0)
        for x, y in monitor.bar(self.batches, total=len(self.batches), desc=f"epoch {epoch + 1}"):
            arch = pick()
            model, optimizer = self.part(arch if not isinstance(arch, list) else arch[0])
            r = cnn.train_step(model, optimizer, x, y, arch, aux_weight=aux_weight, grad_clip=cfg.grad_clip,
                               progress=epoch / cfg.epochs, amp=cfg.amp, sync=False, unsampled=cfg.unsampled)
            steps.add(r.finite, r.loss, r.acc)
        return {**steps.means(), "lr": lr}

    def score(self, archs: list, monitor: Monitor) -> list[dict]:
        out = []
        with monitor.bar(total=len(archs), desc="scoring") as bar:
            for i in range(0, len(archs), SCORE_CHUNK):
                chunk = archs[i:i + SCORE_CHUNK]
                scores = [cnn.score(self.part(a)[0], [a], self.dev, amp=self.cfg.amp, calibration=self.calibration)[0]
                          for a in chunk] if self.subnets else \
                    cnn.score(self.model, chunk, self.dev, amp=self.cfg.amp, calibration=self.calibration)
                out += [{"score": s.acc if self.cfg.score_metric == "accuracy" else -s.loss, "valid_acc": s.acc,
                         "valid_loss": s.loss} for s in scores]
                bar.update(len(chunk))
        return out

    def reward(self, archs: list, rng) -> list[float]:
        """ENAS's reward: each architecture's accuracy with inherited weights on its own minibatch of
        ``batch_size`` dev images drawn at random, BN normalising with the minibatch's statistics (ENAS's
        ``valid_shuffle``)."""
        x = torch.cat([x for x, _ in self.dev])
        y = torch.cat([y for _, y in self.dev])
        out = []
        for arch in archs:
            idx = torch.as_tensor(rng.choice(len(y), size=min(self.cfg.batch_size, len(y)), replace=False),
                                  device=y.device)
            out.append(cnn.score(self.part(arch)[0], [arch], [(x[idx], y[idx])], amp=self.cfg.amp)[0].acc)
        return out

    def arch_size(self, arch) -> int:
        """Parameters of ``arch``'s network at the supernet's sizes (for ``--sampling balanced``)."""
        with torch.device("meta"):
            net = nets.NASNetwork(arch, self.cfg.layers, self.cfg.channels, self.data.num_classes)
        return nets.parameter_count(net)

    def rerank(self, arch, seed: int, monitor: Monitor) -> dict:
        """Short standalone training on the train split, scored on the dev split: ref-PT's recipe (reference §3.1,
        end of search; ``recipes.CNN_RERANK``)."""
        cfg = self.cfg
        recipe = _recipe(CnnTrainConfig, CNN_PRESETS, cfg, **recipes.CNN_RERANK, layers=cfg.rerank_layers,
                         channels=cfg.rerank_channels, epochs=cfg.rerank_epochs, batch_size=cfg.rerank_batch_size,
                         space=cfg.space, amp=cfg.amp, channels_last=cfg.channels_last)
        result = train_cnn.fit_candidate(arch, self.data, recipe, self.device, seed, monitor=monitor)
        return {"score": result["valid_acc"], **result}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "batches": self.batches.state_dict(),
                "subnets": [{"model": m.state_dict(), "optimizer": o.state_dict()} for m, o in self.subnets]}

    def load_state_dict(self, state: dict) -> None:
        load_model_state(self.model, state["model"], "the checkpoint's supernet")
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state_dict(state["batches"])
        self.subnets = []
        if state.get("subnets"):
            self.split()
            for (model, optimizer), saved in zip(self.subnets, state["subnets"]):
                load_model_state(model, saved["model"], "the checkpoint's few-shot supernet")
                optimizer.load_state_dict(saved["optimizer"])


class Nb201Ws(CnnWs):
    """The NAS-Bench-201 weight-sharing supernet (reference §8), its optimiser and data: the CIFAR search with the
    benchmark's network, Nesterov SGD and one cosine over the search's epochs (reference §8)."""

    def build_model(self):
        return nb201.Supernet.from_recipe(self.cfg, self.data.num_classes)

    def build_optimizer(self, model):
        cfg = self.cfg
        return optim.sgd(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                         nesterov=cfg.nesterov)

    def lr(self, epoch: int) -> float:
        return sgdr_lr(epoch, self.cfg.lr, self.cfg.lr_min, self.cfg.epochs, 1)

    def arch_size(self, arch) -> int:
        return self.model.arch_parameters(arch)

    def rerank(self, arch, seed: int, monitor: Monitor) -> dict:
        """The cell's standalone network at the search's sizes, trained from scratch on the train split with the
        supernet's recipe for ``rerank_epochs`` (one cosine), scored on the dev split with running statistics."""
        cfg, data = self.cfg, self.data
        start = time.time()
        with seeded(seed, self.device):
            net = nb201.Nb201Network(arch, cfg.layers, cfg.channels, data.num_classes).to(self.device)
            opt = optim.sgd(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                            nesterov=cfg.nesterov)
            batches = image_batches.ImageBatches(data.train, cfg.rerank_batch_size, data.mean, data.std, train=True,
                                            device=self.device, generator_seed=seed)
            steps = EpochStats(cfg.max_nan_steps)
            for epoch in range(cfg.rerank_epochs):
                for group in opt.param_groups:
                    group["lr"] = sgdr_lr(epoch, cfg.lr, cfg.lr_min, cfg.rerank_epochs, 1)
                for x, y in monitor.bar(batches, total=len(batches), desc=f"re-rank epoch {epoch + 1}"):
                    r = cnn.train_step(net, opt, x, y, grad_clip=cfg.grad_clip, amp=cfg.amp, sync=False)
                    steps.add(r.finite, r.loss, r.acc)
            valid = cnn.score(net, [arch], self.dev, amp=cfg.amp)[0]
        train = steps.means()
        return {"score": valid.acc, "valid_acc": valid.acc, "valid_loss": valid.loss, "train_loss": train["loss"],
                "train_acc": train["acc"], "params": nets.parameter_count(net), "seconds": time.time() - start}


class RnnWs:
    """The PTB weight-sharing supernet, its optimiser and data (reference §3.2)."""

    def __init__(self, cfg, device: torch.device):
        self.cfg, self.device = cfg, device
        self.corpus = load_corpus(cfg.task, cfg.data_dir)
        check_sizes(self.corpus, cfg.batch_size, cfg.bptt)
        train = batchify(self.corpus.train, cfg.batch_size).to(device)
        self.stream = rnn.BatchStream(train, cfg.bptt, seed=cfg.seed, short_prob=cfg.bptt_short_prob)
        self.windows = rnn.score_windows(self.corpus.valid, cfg.score_windows, cfg.bptt, device=device)
        self.model = rnn.build_lm(len(self.corpus.dictionary), cfg).to(device)
        self.optimizer = rnn.make_optimizer(self.model, cfg.lr, cfg.weight_decay)
        self.hidden = self.model.init_hidden(cfg.batch_size)
        step = {"tar": cfg.tar, "grad_clip": cfg.grad_clip, "amp": cfg.amp, "unsampled": cfg.unsampled}
        self.train_step = partial(rnn.train_step, self.model, self.optimizer, **step, sync=False)
        if cfg.cuda_graph:  # CUDA only (runs.check_device); an architecture outside the pool is not trained again
            self.train_step = rnn_graphs.GraphedSteps(self.model, self.optimizer, **step, max_graphs=cfg.pool_size)

    def train_epoch(self, epoch: int, pick: Callable, lr_scale: float, monitor: Monitor) -> dict:
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * lr_scale  # constant lr during the search (reference §3.2)
        steps = EpochStats(cfg.max_nan_steps)
        for window in monitor.bar(self.stream, total=len(self.stream), desc=f"epoch {epoch + 1}"):
            r = self.train_step(window, self.hidden, pick())
            self.hidden = r.hidden
            steps.add(r.finite, r.loss)
        means = steps.means()
        del means["acc"]
        return {**means, "ppl": rnn.perplexity(means["loss"]), "lr": cfg.lr * lr_scale}

    def score(self, archs: list, monitor: Monitor) -> list[dict]:
        out = []
        with monitor.bar(total=len(archs), desc="scoring") as bar:
            for i in range(0, len(archs), SCORE_CHUNK):
                chunk = archs[i:i + SCORE_CHUNK]
                out += [{"score": -s["valid_loss"], **s}
                        for s in rnn.score(self.model, chunk, self.windows, self.cfg.amp)]
                bar.update(len(chunk))
        return out

    def reward(self, archs: list, rng) -> list[float]:
        """ENAS's PTB reward: 80 / validation perplexity with inherited weights, each architecture on its own
        ``batch_size`` of the scoring windows drawn at random."""
        w = self.windows
        out = []
        for arch in archs:
            cols = torch.as_tensor(rng.choice(w.inputs.size(1), size=min(self.cfg.batch_size, w.inputs.size(1)),
                                              replace=False), device=w.inputs.device)
            part = rnn.ScoreWindows(w.inputs[:, cols], w.targets[:, cols], w.burn_in)
            out.append(PTB_REWARD / rnn.score(self.model, [arch], part, self.cfg.amp)[0]["valid_ppl"])
        return out

    def rerank(self, arch, seed: int, monitor: Monitor) -> dict:
        """Short standalone training of the cell at the search size and with its output (as the search
        scores it), scored by validation loss."""
        cfg = self.cfg
        recipe = _recipe(RnnTrainConfig, RNN_PRESETS, cfg, emb_size=cfg.emb_size, epochs=cfg.rerank_epochs,
                         batch_size=cfg.rerank_batch_size, bptt=cfg.bptt, cell_output=cfg.cell_output)
        result = train_rnn.fit_candidate(arch, self.corpus, recipe, self.device, seed, monitor=monitor)
        return {"score": -result["valid_loss"], **result}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "stream": self.stream.state_dict(), "hidden": self.hidden}

    def load_state_dict(self, state: dict) -> None:
        load_model_state(self.model, state["model"], "the checkpoint's supernet")
        self.optimizer.load_state_dict(state["optimizer"])
        self.stream.load_state_dict(state["stream"])
        self.hidden = state["hidden"].to(self.device)


def _recipe(cls, presets: dict, cfg, **overrides):
    """The final-training recipe (its ``paper`` preset) at the re-ranking size of the search."""
    common = {"task": cfg.dataset or cfg.task, "data_dir": cfg.data_dir, "device": cfg.device, "seed": cfg.seed,
              "deterministic": cfg.deterministic}
    base = recipes.WIKITEXT2 if cfg.task == "wikitext2" else {}
    return resolve(cls, presets, "paper", None, {**common, **overrides}, base=base)


def make_supernet(cfg, device: torch.device):
    """The supernet part of ``cfg.space``."""
    return {"rnn": RnnWs, "nb201": Nb201Ws}.get(cfg.space, CnnWs)(cfg, device)
