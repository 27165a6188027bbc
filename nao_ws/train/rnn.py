"""Final training of a discovered RNN cell on PTB / WikiText-2 (reference §5.2), and short candidate training.

`nao-ws train --task ptb` calls `train`, `nao-ws eval` calls `evaluate`; the search re-ranks its top
architectures with `fit_candidate` (no run folder, validation only).

Recipe (reference §5.2): SGD, switched to averaged SGD (NT-ASGD) once the validation loss is worse than the best
of all epochs but the last `asgd_patience`; clipped gradients; variable BPTT with the lr scaled by window length;
variational and locked dropouts, weight decay, TAR, tied embedding and softmax. The best validation weights
(the averaged ones once NT-ASGD is on) are kept and measured on the test split once, at the end.

Data-parallel (``distributed.Processes``): the batch's columns are split over the processes (each carries the
hidden state of its own columns), window lengths come from one seeded stream on every process, the step's
losses are averaged, and rank 0's validation loss decides for all.
"""
from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager, nullcontext

import torch

from supernet import rnn
from supernet.spaces import RnnArch, SpaceError, format_arch, parse_arch

from ..config.options import build_config
from ..data.batches import process_share
from ..data.text import Corpus, batchify, load_corpus
from ..errors import NaoWsError
from ..monitor import Monitor
from ..runs import RunDir, check_device, load_model_state, resolve_device, seed_everything
from .distributed import SINGLE, Processes
from .options import RnnTrainConfig
from .trainer import EpochStats, Trainer, seeded

LOG_EVERY = 50  # training-loss scalars to TensorBoard every this many windows
CHECKPOINT_KIND = "train-rnn"


# -- checks and construction ---------------------------------------------------------------------------------

def _parse(cfg: RnnTrainConfig) -> RnnArch:
    try:
        return parse_arch(cfg.arch, "rnn")
    except SpaceError as e:
        raise NaoWsError(f"--arch is not an RNN cell, which task {cfg.task} needs: {e}") from None


def _check_data(cfg: RnnTrainConfig, corpus: Corpus) -> None:
    splits = (("train", cfg.batch_size, "--batch-size"), ("valid", cfg.eval_batch_size, "--eval-batch-size"),
              ("test", cfg.test_batch_size, "--test-batch-size"))
    for split, bsz, flag in splits:
        rows = getattr(corpus, split).numel() // bsz
        if rows < 2:
            raise NaoWsError(f"{flag} {bsz} is too large for the {split} split of {corpus.name} "
                             f"({getattr(corpus, split).numel()} tokens)")
    rows = corpus.train.numel() // cfg.batch_size
    if cfg.bptt > rows - 2:
        raise NaoWsError(f"--bptt {cfg.bptt} is larger than the data: the {corpus.name} training split gives {rows} "
                         f"tokens per column at --batch-size {cfg.batch_size}; use a smaller --bptt or --batch-size")


def _vocab_id(corpus: Corpus) -> dict:
    words = "\n".join(corpus.dictionary.idx2word).encode()
    return {"size": len(corpus.dictionary), "sha256": hashlib.sha256(words).hexdigest()}


def _check_vocab(state: dict, corpus: Corpus, cfg: RnnTrainConfig) -> None:
    saved, here = state["vocab"], _vocab_id(corpus)
    if saved != here:
        where = cfg.data_dir or "the default data folder"
        raise NaoWsError(f"the checkpoint was trained on a {saved['size']}-word vocabulary; the {corpus.name} corpus "
                         f"in {where} has a different one ({here['size']} words): pass the --data-dir it was trained on")


def _load(cfg: RnnTrainConfig) -> tuple[Corpus, RnnArch]:
    arch = _parse(cfg)
    corpus = load_corpus(cfg.task, cfg.data_dir)
    _check_data(cfg, corpus)
    return corpus, arch


def _build(cfg: RnnTrainConfig, arch: RnnArch, vocab_size: int) -> rnn.RnnModel:
    return rnn.build_lm(vocab_size, cfg, arch)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def dry_run(cfg: RnnTrainConfig) -> dict:
    """Build the model without allocating it and report its size."""
    corpus, arch = _load(cfg)
    with torch.device("meta"):
        model = _build(cfg, arch, len(corpus.dictionary))
    return {"task": cfg.task, "arch": format_arch(arch), "params": _params(model), "vocab": len(corpus.dictionary),
            "emb_size": cfg.emb_size, "hidden_size": cfg.hidden_size, "cell_output": cfg.cell_output,
            "loose_ends": list(rnn.cell_plan(arch)[1]), "train_tokens": corpus.train.numel()}


# -- training -------------------------------------------------------------------------------------------------

class ParamAverage:
    """Mean of the parameters over the steps since the switch to averaged SGD (NT-ASGD, reference §5.2)."""

    def __init__(self, params):
        self.params = list(params)
        self.avg = [p.detach().clone() for p in self.params]
        self.count = 0

    @torch.no_grad()
    def update(self) -> None:
        self.count += 1
        for a, p in zip(self.avg, self.params):
            a.lerp_(p, 1.0 / self.count)

    @contextmanager
    def swapped_in(self):
        """The averaged weights in place of the current ones, for evaluation."""
        with torch.no_grad():
            current = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.avg):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, c in zip(self.params, current):
                    p.copy_(c)

    def state_dict(self) -> dict:
        return {"count": self.count, "avg": self.avg}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]
        for a, s in zip(self.avg, state["avg"]):
            a.copy_(s)


class RnnTrainer(Trainer):
    """Model, optimiser, NT-ASGD average, training windows and validation record of one training run;
    data-parallel, ``net`` is the model under DDP and ``columns`` this process's columns of the batch."""

    kind = CHECKPOINT_KIND

    def __init__(self, cfg: RnnTrainConfig, arch: RnnArch, corpus: Corpus, device: torch.device, seed: int,
                 run: RunDir | None = None, monitor: Monitor | None = None, procs: Processes = SINGLE):
        super().__init__(cfg, run, monitor, procs)
        self.arch, self.device = arch, device
        self.columns = process_share(cfg.batch_size, procs.rank, procs.world)
        self.vocab = _vocab_id(corpus)
        self.model = _build(cfg, arch, len(corpus.dictionary)).to(device)
        self.net = procs.wrap(self.model, device, sync_bn=False)
        self.optimizer = rnn.make_optimizer(self.model, cfg.lr, cfg.weight_decay)
        self.average: ParamAverage | None = None
        self.stream = rnn.BatchStream(batchify(corpus.train, cfg.batch_size).to(device), cfg.bptt, seed,
                                      cfg.bptt_short_prob, cfg.bptt_jitter, cfg.bptt_max_extra)
        self.valid = batchify(corpus.valid, cfg.eval_batch_size).to(device)
        self.hidden = self.model.init_hidden(cfg.batch_size // procs.world)
        self.step = 0
        self.history: list[float] = []  # validation losses before the switch to averaged SGD
        self.best_loss = math.inf
        self.best_model: dict | None = None  # on the CPU
        self.stats = EpochStats(cfg.max_nan_steps)  # the current epoch's windows

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def identity(self) -> dict:
        return {"arch": format_arch(self.arch), "vocab": self.vocab}

    def finished(self) -> bool:
        return self.stream.epoch >= self.cfg.epochs

    def position(self) -> str:
        return f"step {self.step} (epoch {self.stream.epoch})"

    def train_epoch(self) -> dict:
        """The rest of the current epoch (a checkpoint may have been taken mid-epoch)."""
        cfg = self.cfg
        bar = self.monitor.bar(total=len(self.stream), initial=self.stream.position // cfg.bptt,
                               desc=f"epoch {self.stream.epoch + 1}/{cfg.epochs}")
        average = self.procs.average if self.procs.world > 1 else None
        try:
            for window in self.stream:
                if self.procs.world > 1:
                    window = window._replace(inputs=window.inputs[:, self.columns],
                                             targets=window.targets[:, self.columns])
                result = rnn.train_step(self.net, self.optimizer, window, self.hidden,
                                        tar=cfg.tar, grad_clip=cfg.grad_clip, average=average)
                self.hidden = result.hidden
                self.stats.add(result.finite, result.loss)
                if not result.finite:
                    continue
                self.step += 1
                if self.average is not None:
                    self.average.update()
                bar.update()
                if self.step % LOG_EVERY == 0:
                    self.monitor.scalar("train/loss", result.loss, self.step)
                    bar.set_postfix(loss=f"{result.loss:.3f}")
                if cfg.checkpoint_steps and self.step % cfg.checkpoint_steps == 0:
                    self.checkpoint()
            return {"train_loss": self.stats.means()["loss"]}
        finally:
            bar.close()

    def end_epoch(self, record: dict) -> None:
        """Validation, the switch to averaged SGD when it stops improving, the epoch's record."""
        cfg = self.cfg
        with self.average.swapped_in() if self.average is not None else nullcontext():
            valid = self.procs.broadcast(rnn.evaluate_stream(self.model, self.valid, cfg.bptt))
            if valid < self.best_loss:
                self.best_loss = valid
                self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if self.average is None:
            earlier = self.history[:len(self.history) - cfg.asgd_patience]  # all but the last `patience` epochs
            if earlier and valid > min(earlier):
                self.average = ParamAverage(self.model.parameters())
                self.log(f"epoch {self.stream.epoch}: validation stopped improving, switching to averaged SGD")
            self.history.append(valid)
        self.stats = EpochStats(cfg.max_nan_steps)
        train_loss = record["train_loss"]
        record = {"epoch": self.stream.epoch, "step": self.step, "train_loss": train_loss,
                  "train_ppl": rnn.perplexity(train_loss), "valid_loss": valid, "valid_ppl": rnn.perplexity(valid),
                  "best_valid_ppl": rnn.perplexity(self.best_loss), "lr": self.lr, "averaged": self.average is not None,
                  "seconds": record["seconds"]}
        scalars = {k: v for k, v in record.items() if k not in ("epoch", "step")}
        self.monitor.scalars(scalars, self.step, "epoch/")  # one step axis for every event: see train()
        self.monitor.write(f"epoch {record['epoch']}: train ppl {record['train_ppl']:.2f}, "
                           f"valid ppl {record['valid_ppl']:.2f}, lr {self.lr:g}")
        if self.run is not None:
            self.run.append_jsonl("metrics.jsonl", record)

    def lower_lr(self, factor: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] *= factor

    def test_loss(self, tokens: torch.Tensor) -> float:
        """Loss of the best validation weights on a held-out split (once, at the end)."""
        if self.best_model is not None:
            self.model.load_state_dict(self.best_model)
        data = batchify(tokens, self.cfg.test_batch_size).to(self.device)
        return rnn.evaluate_stream(self.model, data, self.cfg.bptt)

    def restore(self, state: dict) -> None:
        if state.get("kind") == self.kind and state.get("vocab") != self.vocab:
            raise NaoWsError(f"the checkpoint was trained on a {state['vocab']['size']}-word vocabulary, the corpus "
                             f"now has a different one ({self.vocab['size']} words): use the data it was trained on")
        super().restore(state)

    def state_dict(self) -> dict:
        return {"epoch": self.stream.epoch, "step": self.step, "rollbacks": self.rollbacks,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "average": None if self.average is None else self.average.state_dict(),
                "stream": self.stream.state_dict(), "hidden": self.procs.gather_rows(self.hidden),
                "history": self.history,
                "best_loss": self.best_loss, "best_model": self.best_model, "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.average = None
        if state["average"] is not None:
            self.average = ParamAverage(self.model.parameters())
            self.average.load_state_dict(state["average"])
        self.stream.load_state_dict(state["stream"])
        self.hidden = state["hidden"][self.columns].to(self.device)
        self.step, self.rollbacks, self.history = state["step"], state["rollbacks"], list(state["history"])
        self.best_loss, self.best_model = state["best_loss"], state["best_model"]
        self.stats.load_state_dict(state["stats"])


def train(cfg: RnnTrainConfig, run: RunDir | None, monitor: Monitor, resume: bool, procs: Processes = SINGLE) -> dict:
    """Final training (reference §5.2) in a run folder; returns and writes metrics.json (test perplexity at the end).
    Every process of a data-parallel training calls it; rank 0 holds the run folder, tests and returns the result."""
    seed_everything(cfg.seed, cfg.deterministic)
    device = procs.place(check_device(cfg))
    corpus, arch = _load(cfg)
    trainer = RnnTrainer(cfg, arch, corpus, device, cfg.seed, run=run, monitor=monitor, procs=procs)
    procs.seed(cfg.seed)
    on = f", {procs.world} processes" if procs.world > 1 else ""
    if not resume:
        if run is not None:
            run.log(f"training {format_arch(arch)} on {corpus.name}: {_params(trainer.model)} parameters, "
                    f"device {device}{on}")
        trainer.checkpoint()  # step 0: a non-finite loss in the first epoch has something to roll back to
    else:
        trainer.resume()
        monitor.drop_events_from(trainer.step + 1)  # TensorBoard steps are training steps, per-epoch scalars included
        if run is not None:
            run.log(f"resumed at epoch {trainer.stream.epoch}, step {trainer.step}{on}")
    trainer.fit()
    if run is None:  # another process of a data-parallel training: rank 0 tests and reports
        return {}
    test = trainer.test_loss(corpus.test)
    result = {"task": cfg.task, "arch": format_arch(arch), "params": _params(trainer.model),
              "epochs": trainer.stream.epoch, "steps": trainer.step, "valid_loss": trainer.best_loss,
              "valid_ppl": rnn.perplexity(trainer.best_loss), "test_loss": test, "test_ppl": rnn.perplexity(test)}
    run.wait()  # the last checkpoint is on disk, or its error raised, before the run says it is done
    run.write_json("metrics.json", result)
    run.log(f"done: valid ppl {result['valid_ppl']:.2f}, test ppl {result['test_ppl']:.2f}")
    return result


def fit_candidate(arch: RnnArch | str, corpus: Corpus, cfg: RnnTrainConfig, device: torch.device | str, seed: int,
                  monitor: Monitor | None = None) -> dict:
    """Train `arch` from scratch with `cfg` (e.g. a few epochs) and return its best validation loss.

    No run folder (the last checkpoint is kept in memory) and no test split; torch runs seeded from `seed` on a
    fork of its generators, so the caller's random state is left untouched.
    """
    arch = parse_arch(arch, "rnn") if isinstance(arch, str) else arch
    device = torch.device(device)
    _check_data(cfg, corpus)
    with seeded(seed, device):
        trainer = RnnTrainer(cfg, arch, corpus, device, seed, monitor=monitor)
        trainer.checkpoint()
        trainer.fit()
    return {"valid_loss": trainer.best_loss, "valid_ppl": rnn.perplexity(trainer.best_loss), "params": _params(trainer.model)}


def evaluate(state: dict, device: str, data_dir: str | None) -> dict:
    """Test perplexity of a checkpoint's best validation weights (`nao-ws eval --checkpoint`)."""
    if state.get("kind") != CHECKPOINT_KIND or "trainer" not in state:
        raise NaoWsError(f"not a {CHECKPOINT_KIND} checkpoint (kind '{state.get('kind')}')")
    cfg = build_config(RnnTrainConfig, state["config"], {"data_dir": data_dir}, where=("checkpoint config", "flags"))
    dev = resolve_device(device)
    corpus = load_corpus(cfg.task, cfg.data_dir)
    _check_vocab(state, corpus, cfg)
    arch = _parse(cfg)
    model = _build(cfg, arch, len(corpus.dictionary)).to(dev)
    trainer = state["trainer"]
    load_model_state(model, trainer["best_model"] if trainer["best_model"] is not None else trainer["model"],
                     "the checkpoint")
    test = rnn.evaluate_stream(model, batchify(corpus.test, cfg.test_batch_size).to(dev), cfg.bptt)
    return {"task": cfg.task, "arch": format_arch(arch), "params": _params(model), "epoch": trainer["epoch"],
            "valid_ppl": rnn.perplexity(trainer["best_loss"]), "test_loss": test, "test_ppl": rnn.perplexity(test)}
