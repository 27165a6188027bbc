"""Final training of a discovered RNN cell on PTB / WikiText-2 (SPEC 5.2), and short candidate training.

`nao-ws train --task ptb` calls `train`, `nao-ws eval` calls `evaluate`; the search re-ranks its top
architectures with `fit_candidate` (no run folder, validation only).

Recipe (SPEC 5.2): SGD, switched to averaged SGD (NT-ASGD) once the validation loss is worse than the best of
all epochs but the last `asgd_patience`; clipped gradients; variable BPTT with the lr scaled by window length;
variational and locked dropouts, weight decay, TAR, tied embedding and softmax. The best validation weights
(the averaged ones once NT-ASGD is on) are kept and measured on the test split once, at the end.
Divergence, checkpoint layout and candidate seeding follow `nao_ws.training`'s conventions, as the CNN
training and the search do.
"""
from __future__ import annotations

import hashlib
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from supernet import rnn
from supernet.spaces import RnnArch, SpaceError, format_arch, parse_arch

from .config import RunConfig, build_config, config_to_dict, option
from .datasets import Corpus, batchify, load_corpus
from .errors import NaoWsError
from .monitor import Monitor
from .recipes import WIKITEXT2, RnnFinal
from .runs import RunDir, check_device, resolve_device, rng_state, seed_everything, set_rng_state
from .training import MAX_NAN_STEPS, ROLLBACK_LR_FACTOR, Checkpoints, Diverged, EpochStats, next_rollback, seeded

REFERENCE_CELL = "0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 1"  # SPEC 5.2 (ref-TF form: node 0 = tanh)
LOG_EVERY = 50  # training-loss scalars to TensorBoard every this many windows
CHECKPOINT_KIND = "train-rnn"


@dataclass(frozen=True)
class Config(RunConfig, RnnFinal):
    """``nao-ws train`` for PTB / WikiText-2: the SPEC 5.2 recipe (`task_defaults` adapts WikiText-2), the cell
    and the run options; every field is a flag."""

    arch: str = option(REFERENCE_CELL, "RNN cell: 23 or 22 (ref-TF) integers, JSON, or a JSON file (SPEC 7)")
    checkpoint_steps: int = option(0, "also checkpoint every N windows (0 = at epoch ends only)")
    max_nan_steps: int = option(MAX_NAN_STEPS, "non-finite losses in a row before rolling back to the last checkpoint")


PRESETS = {
    "paper": {},
    "smoke": {"emb_size": 32, "epochs": 2, "test_batch_size": 10},
}


def task_defaults(task: str) -> dict:
    """WikiText-2's overrides of the PTB recipe (SPEC 5.2)."""
    return WIKITEXT2 if task == "wikitext2" else {}


# -- checks and construction ---------------------------------------------------------------------------------

def _check_config(cfg: Config) -> None:
    for name in ("batch_size", "bptt", "emb_size", "eval_batch_size", "test_batch_size"):
        if getattr(cfg, name) < 1:
            raise NaoWsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    for name in ("epochs", "asgd_patience", "checkpoint_steps", "bptt_max_extra", "max_nan_steps"):
        if getattr(cfg, name) < 0:
            raise NaoWsError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(cfg, name)}")
    if cfg.lr <= 0 or cfg.grad_clip <= 0 or cfg.weight_decay < 0 or cfg.tar < 0 or cfg.bptt_jitter < 0:
        raise NaoWsError("--lr and --grad-clip must be positive; --weight-decay, --tar and --bptt-jitter not negative")
    if not 0 <= cfg.bptt_short_prob <= 1:
        raise NaoWsError(f"--bptt-short-prob {cfg.bptt_short_prob} must be in [0, 1]")
    for name in rnn.DROPOUTS:
        if not 0 <= getattr(cfg, name) < 1:
            raise NaoWsError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.cell_output not in rnn.CELL_OUTPUTS:
        raise NaoWsError(f"--cell-output {cfg.cell_output} is unknown: use {' or '.join(rnn.CELL_OUTPUTS)}")


def _parse(cfg: Config) -> RnnArch:
    try:
        return parse_arch(cfg.arch, "rnn")
    except SpaceError as e:
        raise NaoWsError(f"--arch is not an RNN cell, which task {cfg.task} needs: {e}") from None


def _check_data(cfg: Config, corpus: Corpus) -> None:
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


def _check_vocab(state: dict, corpus: Corpus, cfg: Config) -> None:
    saved, here = state["vocab"], _vocab_id(corpus)
    if saved != here:
        where = cfg.data_dir or "the default data folder"
        raise NaoWsError(f"the checkpoint was trained on a {saved['size']}-word vocabulary; the {corpus.name} corpus "
                         f"in {where} has a different one ({here['size']} words): pass the --data-dir it was trained on")


def _load(cfg: Config) -> tuple[Corpus, RnnArch]:
    _check_config(cfg)
    arch = _parse(cfg)
    corpus = load_corpus(cfg.task, cfg.data_dir)
    _check_data(cfg, corpus)
    return corpus, arch


def _build(cfg: Config, arch: RnnArch, vocab_size: int) -> rnn.RnnModel:
    return rnn.build_lm(vocab_size, cfg, arch)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def dry_run(cfg: Config) -> dict:
    """Build the model without allocating it and report its size."""
    corpus, arch = _load(cfg)
    with torch.device("meta"):
        model = _build(cfg, arch, len(corpus.dictionary))
    return {"task": cfg.task, "arch": format_arch(arch), "params": _params(model), "vocab": len(corpus.dictionary),
            "emb_size": cfg.emb_size, "hidden_size": cfg.hidden_size, "cell_output": cfg.cell_output,
            "loose_ends": list(rnn.cell_plan(arch)[1]), "train_tokens": corpus.train.numel()}


# -- training -------------------------------------------------------------------------------------------------

class ParamAverage:
    """Mean of the parameters over the steps since the switch to averaged SGD (NT-ASGD, SPEC 5.2)."""

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


class Trainer:
    """Model, optimiser, NT-ASGD average, training windows and validation record of one training run.

    With a run folder, checkpoints go there (and metrics to metrics.jsonl / TensorBoard); without one
    (`fit_candidate`) the last checkpoint is kept in memory for rolling back.
    """

    def __init__(self, cfg: Config, arch: RnnArch, corpus: Corpus, device: torch.device, seed: int,
                 run: RunDir | None = None, monitor: Monitor | None = None):
        self.cfg, self.arch, self.run, self.device = cfg, arch, run, device
        self.monitor = monitor or Monitor(None, progress=False)
        self.vocab = _vocab_id(corpus)
        self.model = _build(cfg, arch, len(corpus.dictionary)).to(device)
        self.optimizer = rnn.make_optimizer(self.model, cfg.lr, cfg.weight_decay)
        self.average: ParamAverage | None = None
        self.stream = rnn.BatchStream(batchify(corpus.train, cfg.batch_size).to(device), cfg.bptt, seed,
                                      cfg.bptt_short_prob, cfg.bptt_jitter, cfg.bptt_max_extra)
        self.valid = batchify(corpus.valid, cfg.eval_batch_size).to(device)
        self.hidden = self.model.init_hidden(cfg.batch_size)
        self.step = 0
        self.history: list[float] = []  # validation losses before the switch to averaged SGD
        self.best_loss = math.inf
        self.best_model: dict | None = None  # on the CPU
        self.stats = EpochStats(cfg.max_nan_steps)  # the current epoch's windows
        self.rollbacks = 0
        self.checkpoints = Checkpoints(run)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def fit(self) -> None:
        """Train until `cfg.epochs` epochs are complete, validating and checkpointing after each."""
        cfg = self.cfg
        while self.stream.epoch < cfg.epochs:
            start = time.perf_counter()
            bar = self.monitor.bar(total=len(self.stream), initial=self.stream.position // cfg.bptt,
                                   desc=f"epoch {self.stream.epoch + 1}/{cfg.epochs}")
            try:
                for window in self.stream:
                    result = rnn.train_step(self.model, self.optimizer, window, self.hidden,
                                            tar=cfg.tar, grad_clip=cfg.grad_clip)
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
                train_loss = self.stats.means()["loss"]
            except Diverged as e:
                bar.close()
                self._roll_back(str(e))
                continue
            bar.close()
            self._end_epoch(train_loss, time.perf_counter() - start)
            self.checkpoint()

    def _end_epoch(self, train_loss: float, seconds: float) -> None:
        cfg = self.cfg
        with self.average.swapped_in() if self.average is not None else nullcontext():
            valid = rnn.evaluate_stream(self.model, self.valid, cfg.bptt)
            if valid < self.best_loss:
                self.best_loss = valid
                self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if self.average is None:
            earlier = self.history[:len(self.history) - cfg.asgd_patience]  # all but the last `patience` epochs
            if earlier and valid > min(earlier):
                self.average = ParamAverage(self.model.parameters())
                self._log(f"epoch {self.stream.epoch}: validation stopped improving, switching to averaged SGD")
            self.history.append(valid)
        self.stats = EpochStats(cfg.max_nan_steps)
        record = {"epoch": self.stream.epoch, "step": self.step, "train_loss": train_loss,
                  "train_ppl": rnn.perplexity(train_loss), "valid_loss": valid, "valid_ppl": rnn.perplexity(valid),
                  "best_valid_ppl": rnn.perplexity(self.best_loss), "lr": self.lr, "averaged": self.average is not None,
                  "seconds": seconds}
        scalars = {k: v for k, v in record.items() if k not in ("epoch", "step")}
        self.monitor.scalars(scalars, self.step, "epoch/")  # one step axis for every event: see train()
        self.monitor.write(f"epoch {record['epoch']}: train ppl {record['train_ppl']:.2f}, "
                           f"valid ppl {record['valid_ppl']:.2f}, lr {self.lr:g}")
        if self.run is not None:
            self.run.append_jsonl("metrics.jsonl", record)

    def _roll_back(self, why: str) -> None:
        """Back to the last checkpoint with a lower learning rate (``training``'s divergence policy)."""
        rollbacks = next_rollback(self.rollbacks, why)
        failed_at = self.step
        self.restore(self.checkpoints.latest())
        self.rollbacks = rollbacks
        for group in self.optimizer.param_groups:
            group["lr"] *= ROLLBACK_LR_FACTOR
        self._log(f"{why} after step {failed_at}: rolled back to step {self.step} (epoch {self.stream.epoch}), "
                  f"lr lowered to {self.lr:g}")

    def _log(self, message: str) -> None:
        self.monitor.write(message)
        if self.run is not None:
            self.run.log(message)

    def test_loss(self, tokens: torch.Tensor) -> float:
        """Loss of the best validation weights on a held-out split (once, at the end)."""
        if self.best_model is not None:
            self.model.load_state_dict(self.best_model)
        data = batchify(tokens, self.cfg.test_batch_size).to(self.device)
        return rnn.evaluate_stream(self.model, data, self.cfg.bptt)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        self.checkpoints.save({"kind": CHECKPOINT_KIND, "config": config_to_dict(self.cfg),
                               "arch": format_arch(self.arch), "vocab": self.vocab, "trainer": self.state_dict(),
                               "rng": rng_state()}, self.step, logs=("metrics.jsonl",))

    def restore(self, state: dict) -> None:
        if state.get("kind") != CHECKPOINT_KIND or parse_arch(state["arch"], "rnn") != self.arch:
            raise NaoWsError("the checkpoint is not one of this RNN training run (kind or architecture differ)")
        if state["vocab"] != self.vocab:
            raise NaoWsError(f"the checkpoint was trained on a {state['vocab']['size']}-word vocabulary, the corpus "
                             f"now has a different one ({self.vocab['size']} words): use the data it was trained on")
        self.load_state_dict(state["trainer"])
        set_rng_state(state["rng"])

    def state_dict(self) -> dict:
        return {"epoch": self.stream.epoch, "step": self.step, "rollbacks": self.rollbacks,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "average": None if self.average is None else self.average.state_dict(),
                "stream": self.stream.state_dict(), "hidden": self.hidden, "history": self.history,
                "best_loss": self.best_loss, "best_model": self.best_model, "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.average = None
        if state["average"] is not None:
            self.average = ParamAverage(self.model.parameters())
            self.average.load_state_dict(state["average"])
        self.stream.load_state_dict(state["stream"])
        self.hidden = state["hidden"].to(self.device)
        self.step, self.rollbacks, self.history = state["step"], state["rollbacks"], list(state["history"])
        self.best_loss, self.best_model = state["best_loss"], state["best_model"]
        self.stats.load_state_dict(state["stats"])


def train(cfg: Config, run: RunDir, monitor: Monitor, resume: bool) -> dict:
    """Final training (SPEC 5.2) in a run folder; returns and writes metrics.json (test perplexity at the end)."""
    seed_everything(cfg.seed, cfg.deterministic)
    device = check_device(cfg)
    corpus, arch = _load(cfg)
    trainer = Trainer(cfg, arch, corpus, device, cfg.seed, run=run, monitor=monitor)
    state = run.resume_checkpoint() if resume else None
    if state is None:
        run.log(f"training {format_arch(arch)} on {corpus.name}: {_params(trainer.model)} parameters, device {device}")
        trainer.checkpoint()  # step 0: a non-finite loss in the first epoch has something to roll back to
    else:
        trainer.restore(state)
        run.restore_logs(state)
        monitor.drop_events_from(trainer.step + 1)  # TensorBoard steps are training steps, per-epoch scalars included
        run.log(f"resumed at epoch {trainer.stream.epoch}, step {trainer.step}")
    trainer.fit()
    test = trainer.test_loss(corpus.test)
    result = {"task": cfg.task, "arch": format_arch(arch), "params": _params(trainer.model),
              "epochs": trainer.stream.epoch, "steps": trainer.step, "valid_loss": trainer.best_loss,
              "valid_ppl": rnn.perplexity(trainer.best_loss), "test_loss": test, "test_ppl": rnn.perplexity(test)}
    run.wait()  # the last checkpoint is on disk, or its error raised, before the run says it is done
    run.write_json("metrics.json", result)
    run.log(f"done: valid ppl {result['valid_ppl']:.2f}, test ppl {result['test_ppl']:.2f}")
    return result


def fit_candidate(arch: RnnArch | str, corpus: Corpus, cfg: Config, device: torch.device | str, seed: int,
                  monitor: Monitor | None = None) -> dict:
    """Train `arch` from scratch with `cfg` (e.g. a few epochs) and return its best validation loss.

    No run folder (the last checkpoint is kept in memory) and no test split; torch runs seeded from `seed` on a
    fork of its generators, so the caller's random state is left untouched.
    """
    arch = parse_arch(arch, "rnn") if isinstance(arch, str) else arch
    device = torch.device(device)
    _check_config(cfg)
    _check_data(cfg, corpus)
    with seeded(seed, device):
        trainer = Trainer(cfg, arch, corpus, device, seed, monitor=monitor)
        trainer.checkpoint()
        trainer.fit()
    return {"valid_loss": trainer.best_loss, "valid_ppl": rnn.perplexity(trainer.best_loss), "params": _params(trainer.model)}


def evaluate(state: dict, device: str, data_dir: str | None) -> dict:
    """Test perplexity of a checkpoint's best validation weights (`nao-ws eval --checkpoint`)."""
    if state.get("kind") != CHECKPOINT_KIND or "trainer" not in state:
        raise NaoWsError(f"not a {CHECKPOINT_KIND} checkpoint (kind '{state.get('kind')}')")
    cfg = build_config(Config, state["config"], {"data_dir": data_dir}, where=("checkpoint config", "flags"))
    dev = resolve_device(device)
    corpus = load_corpus(cfg.task, cfg.data_dir)
    _check_vocab(state, corpus, cfg)
    arch = _parse(cfg)
    model = _build(cfg, arch, len(corpus.dictionary)).to(dev)
    trainer = state["trainer"]
    model.load_state_dict(trainer["best_model"] if trainer["best_model"] is not None else trainer["model"])
    test = rnn.evaluate_stream(model, batchify(corpus.test, cfg.test_batch_size).to(dev), cfg.bptt)
    return {"task": cfg.task, "arch": format_arch(arch), "params": _params(model), "epoch": trainer["epoch"],
            "valid_ppl": rnn.perplexity(trainer["best_loss"]), "test_loss": test, "test_ppl": rnn.perplexity(test)}
