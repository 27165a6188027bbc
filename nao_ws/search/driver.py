"""The search driver: any strategy (``strategies``) on any score source (``sources``), in rounds.

    round 0:  ``source.initial`` random architectures
    a round:  source.advance (e.g. supernet epochs)  ->  source.score  ->  strategy.propose (+ random refill)
    the end:  source.rerank of the best few (when the source re-ranks)  ->  best.json

A source whose scores age (a supernet that trains on) scores its whole pool each round, and the pool keeps
its best; other sources score each architecture once. The driver alone writes the run folder: ``pool.jsonl``
(one record per score, written the moment it exists), ``metrics.jsonl`` (one record per phase, each with its
TensorBoard ``step``), ``best.json``, ``tb/`` and the checkpoints (after each unit of training, each round's
proposals and each re-ranking), which hold the driver's, the source's and the strategy's states, every RNG
and the logs' records. ``--resume`` restores the latest and replays from there, keeping the scores written
after it in the round being scored (they come from the state it holds), so a run killed at any moment ends,
on CPU, exactly as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from supernet.spaces import get_space, parse_arch

from .. import plot
from ..config.options import config_to_dict
from ..errors import NaoWsError
from ..monitor import Monitor
from ..runs import RunDir, generator_state, rng_state, seed_everything, set_generator_state, set_rng_state
from ..runs.started import check_files_unchanged, file_sha256
from ..train.trainer import Diverged, RollsBack
from .sources import ScoreSource, make_source, source_kind
from .sources.table import BUILT_IN
from .strategies import Proposal, canonical_text, make_strategy, unique_random

FORMAT = 2  # the checkpoint layout of this driver; nao-ws 0.1's three search loops wrote other ones
OLD_KINDS = ("search", "tabular-search", "standalone-search")
LOGS = ("pool.jsonl", "metrics.jsonl")
TB_GROUPS = {"train": "supernet/", "score": "pool/", "propose": "propose/"}  # metrics.jsonl phases in TensorBoard


@dataclass
class State:
    """What changes during a search besides the source and the strategy, in checkpointable form."""

    round: int = 0
    phase: str = "advance"  # advance | score | propose | finish | done
    pool: list = field(default_factory=list)  # texts this round scores (an ageing source: its whole pool)
    origin: dict = field(default_factory=dict)  # text -> initial | random | the strategy's name, for the pool
    info: dict = field(default_factory=dict)  # text -> what its proposer said of it (prediction, parent)
    order: list = field(default_factory=list)  # every text proposed, in the order proposed
    final: list = field(default_factory=list)  # the re-ranking results so far
    step: int = 0  # the TensorBoard step when the checkpoint was taken
    result: dict | None = None  # best.json once the search is done
    rollbacks: int = 0
    checkpoints: int = 0


def check_config(cfg) -> None:
    """What cannot work, as one-line errors, before anything is created."""
    kind = source_kind(cfg)
    if kind == "table":
        from .sources.table import check_config as check
    elif kind == "proxy":
        from .sources.proxy import check_config as check
    elif kind == "standalone":
        from .sources.standalone import check_config as check
    else:
        from .sources.supernet import check_config as check
    check(cfg)
    dataset = getattr(cfg, "dataset", "")
    if dataset == "cifar10-sample" and cfg.task not in ("cifar10", "cifar10-sample"):
        raise NaoWsError(f"the bundled sample holds CIFAR-10 images, not {cfg.task}'s (--dataset cifar10-sample, set "
                         f"by --preset smoke): use --task cifar10 for a smoke run, or another preset for {cfg.task}")
    if cfg.strategy == "rea" and cfg.tournament > cfg.population:
        raise NaoWsError(f"--tournament {cfg.tournament} must lie between 1 and --population {cfg.population}")


def resumable(run: RunDir) -> dict:
    """The checkpoint ``--resume`` continues from, refused in one line if another version wrote it."""
    ckpt = run.resume_checkpoint()
    if ckpt.get("kind") == "search" and ckpt.get("format") == FORMAT:
        return ckpt
    if ckpt.get("kind") in OLD_KINDS:
        raise NaoWsError(f"{run.path} was written by nao-ws 0.1, whose search loops this version replaced: finish it "
                         "with nao-ws 0.1.0, or start a new run")
    raise NaoWsError(f"{run.path} holds a '{ckpt.get('kind')}' checkpoint, not a search's")


def input_files(cfg) -> dict:
    """Checksums of the data files a search reads whole, which a resume must find unchanged: a CSV table (plain,
    gzipped or built in, the last by its name), an .npz of images (--data-file) and the PTB / WikiText-2 text
    (a few MB: milliseconds to hash)."""
    files = {}
    if source_kind(cfg) == "table" and str(cfg.benchmark).endswith((".csv", ".csv.gz")):
        files[str(cfg.benchmark)] = cfg.benchmark
    if source_kind(cfg) == "table" and str(cfg.benchmark) in BUILT_IN:
        files[str(cfg.benchmark)] = BUILT_IN[str(cfg.benchmark)]
    if getattr(cfg, "data_file", None):
        files[str(cfg.data_file)] = cfg.data_file
    if source_kind(cfg) == "supernet" and cfg.space == "rnn":
        from ..data.tasks import data_root
        from ..data.text import text_files

        files.update((str(p), p) for p in text_files(cfg.task, data_root(cfg.data_dir)).values())
    return {name: file_sha256(p) for name, p in files.items()}


class Search(RollsBack):
    """One search: its config, run folder, source, strategy and state; ``run`` below drives the phases."""

    def __init__(self, cfg, run: RunDir, monitor: Monitor, source: ScoreSource):
        self.cfg, self.run, self.monitor, self.source = cfg, run, monitor, source
        self.space = get_space(cfg.space)
        self.strategy = make_strategy(cfg, self.space, self.source, monitor)
        self.rng = np.random.default_rng(cfg.seed)
        self.state = State()
        self.records: list[dict] = []  # pool.jsonl's
        self.latest: dict[str, dict] = {}  # text -> its latest record
        self.drawn: dict[str, str] = {}  # TensorBoard tag -> the cell last drawn there
        self.clock = time.perf_counter()  # when the phase being logged next began
        self.inputs = input_files(cfg)

    @property
    def rollbacks(self) -> int:
        return self.state.rollbacks

    @rollbacks.setter
    def rollbacks(self, value: int) -> None:
        self.state.rollbacks = value

    # -- state ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Round 0: ``source.initial`` random architectures, each of a canonical class of its own."""
        archs = unique_random(self.space, self.source.initial, set(), self.rng)
        self.add_to_pool([Proposal(a, "initial") for a in archs], keep=[])
        self.run.log(f"started: {self.cfg.task}, {self.cfg.space}, strategy {self.cfg.strategy}, "
                     f"{source_kind(self.cfg)} scores, on {self.source.device}")
        self.checkpoint()

    def checkpoint(self) -> None:
        self.monitor.flush()
        self.state.checkpoints += 1
        self.state.step = self.step()
        self.run.save_checkpoint({
            "kind": "search", "format": FORMAT, "config": config_to_dict(self.cfg), "inputs": self.inputs,
            "driver": dict(self.state.__dict__), "source": self.source.state_dict(),
            "strategy": self.strategy.state_dict(), "rng": rng_state(), "np_rng": generator_state(self.rng),
        }, step=self.state.checkpoints, logs=LOGS, background=True)  # written while the next phase runs

    def restore(self, ckpt: dict) -> None:
        written = self.run.read_jsonl("pool.jsonl")
        self.state = State(**ckpt["driver"])
        self.source.load_state_dict(ckpt["source"])
        self.strategy.load_state_dict(ckpt["strategy"])
        set_rng_state(ckpt["rng"])
        set_generator_state(self.rng, ckpt["np_rng"])
        self.run.restore_logs(ckpt)  # the logs as at this checkpoint: later lines go, cut ones come back
        self.records = list(ckpt["logs"]["pool.jsonl"])
        self.latest = {r["arch"]: r for r in self.records}
        if written[:len(self.records)] == self.records:  # scores of this round written after the checkpoint
            pending, tail = set(self.state.pool) - self.scored_now(), []
            for r in written[len(self.records):]:
                if r.get("round") == self.state.round and r.get("arch") in pending:
                    pending.discard(r["arch"])
                    tail.append(r)
            self.keep(tail)
        # TensorBoard can only drop events from a step on: drop the checkpoint's step, replay what it logged
        self.monitor.drop_events_from(self.state.step)
        for record in self.run.read_jsonl("metrics.jsonl"):
            if record.get("step") == self.state.step:
                self.to_tensorboard(record)

    def latest_checkpoint(self) -> dict:
        return self.run.load_latest_checkpoint()

    def lower_lr(self, factor: float) -> None:
        self.source.lower_lr(factor)

    def position(self) -> str:
        return self.source.position() or f"round {self.state.round}"

    def warn(self, message: str) -> None:
        self.run.log("WARNING " + message)
        self.monitor.write(message)

    def step(self) -> int:
        return self.source.step(len(self.records))

    # -- records -------------------------------------------------------------------------------------------
    def keep(self, records: list[dict]) -> None:
        """Records of scores, in pool.jsonl (one write, one fsync) and in memory."""
        if records:
            self.run.append_jsonl("pool.jsonl", *records)
        self.records += records
        self.latest.update((r["arch"], r) for r in records)

    def scored_now(self) -> set:
        """The pool's texts this round has scored."""
        return {t for t in self.state.pool if self.latest.get(t, {}).get("round") == self.state.round}

    def log(self, record: dict) -> None:
        """A phase's record: a line of metrics.jsonl, and TensorBoard events at its step; ``seconds``, the wall
        time since the previous record (or the start), unless the record brings its own (a re-ranking's)."""
        now = time.perf_counter()
        record = {"round": self.state.round, "step": self.step(), **record}
        record.setdefault("seconds", round(now - self.clock, 3))
        self.clock = now
        self.run.append_jsonl("metrics.jsonl", record)
        self.to_tensorboard(record)

    def to_tensorboard(self, record: dict) -> None:
        """The events of a metrics.jsonl record; ``restore`` replays those of its checkpoint's step."""
        prefix = TB_GROUPS.get(record["phase"])
        if prefix is None:
            return
        step = record["step"]
        values = {k: math.nan if v is None else v for k, v in record.items() if k not in ("round", "step", "epoch")}
        self.monitor.scalars(values, step, prefix)  # (metrics.jsonl holds NaN as null: strict JSON)
        for group, scalars in values.items():
            if isinstance(scalars, dict):
                self.monitor.scalars({k: math.nan if v is None else v for k, v in scalars.items()}, step, group + "/")
        if record["phase"] == "score" and record.get("best") is not None:
            self.monitor.scalar("best/score", record["best_score"], step)
            self.draw("best/cells", record["best"], step)
        if isinstance(record.get("policy"), dict) and "likely" in record["policy"]:
            self.draw("policy/likely", record["policy"]["likely"], step)

    def draw(self, tag: str, text: str, step: int) -> None:
        """The cell ``text`` to TensorBoard under ``tag``, when it differs from the one drawn there last."""
        if self.drawn.get(tag) != text and self.monitor.log_dir is not None:
            self.monitor.image(tag, plot.render(parse_arch(text, self.cfg.space)), step)
            self.drawn[tag] = text

    def history(self) -> list[tuple]:
        """What the strategy learns from: (architecture, score) pairs, oldest first. A source whose scores age
        gives its pool (``--history pool``), every architecture with its latest score (``all``) or all of them
        scored again now (``rescore``); any other source every successful query."""
        s, ok = self.state, lambda t: t in self.latest and self.latest[t]["score"] is not None
        how = getattr(self.cfg, "history", "all") if self.source.stale else "all"
        texts = [t for t in (s.pool if how == "pool" else s.order) if ok(t)]
        scores = {t: self.latest[t]["score"] for t in texts}
        if how == "rescore":  # all at once, the pool too: a --score-proxy score ranks the cells scored together
            archs = [parse_arch(t, self.cfg.space) for t in texts]
            for chunk in self.source.score(archs, self.monitor) if texts else ():
                scores.update((texts[i], r["score"]) for i, r in chunk)
        return [(parse_arch(t, self.cfg.space), scores[t]) for t in texts]

    def view(self) -> list[str]:
        """The architectures the best is chosen from: the pool of an ageing source, else every one scored."""
        texts = self.state.pool if self.source.stale else self.state.order
        return [t for t in texts if self.latest.get(t, {}).get("score") is not None]

    def add_to_pool(self, proposals: list[Proposal], keep: list[str]) -> None:
        s = self.state
        texts = [self.space.format(p.arch) for p in proposals]
        s.origin = {**{t: s.origin[t] for t in keep}, **{t: p.origin for t, p in zip(texts, proposals)}}
        s.info = {**{t: s.info[t] for t in keep if t in s.info}, **{t: p.info for t, p in zip(texts, proposals) if p.info}}
        s.pool, s.order = keep + texts, s.order + texts

    def widen_pool(self) -> None:
        """``--final-pool history``: the last round scores every architecture scored so far, so the end ranks
        them all by one supernet state (cells a younger supernet dropped from the pool come back)."""
        s = self.state
        s.origin = {t: s.origin[t] if t in s.origin else self.latest[t]["origin"] for t in s.order}
        s.pool = list(s.order)  # every text that was ever in the pool

    # -- phases --------------------------------------------------------------------------------------------
    def advance(self) -> None:
        """A unit of the source's work (a supernet epoch), then what the strategy learns from it (ENAS)."""
        pick = self.strategy.sampler(self.rng) if getattr(self.cfg, "sampling", None) == "policy" else None
        done = self.source.advance(self.state.round, [parse_arch(t, self.cfg.space) for t in self.state.pool],
                                   self.rng, self.monitor, pick)
        if done is None:
            self.state.phase = "score"
            if getattr(self.cfg, "final_pool", "last") == "history" and self.source.finished(self.state.round + 1,
                                                                                          len(self.records)):
                self.widen_pool()
                self.checkpoint()  # a death while scoring resumes with the widened pool
            return
        record, checkpoint = done
        record.update(self.strategy.learn(lambda archs: self.source.reward(archs, self.rng), self.rng))
        self.log({"phase": "train", **record})
        if checkpoint:
            self.checkpoint()

    def score(self) -> None:
        """Score what the round has not scored yet, each result written as it comes; then the round's figures."""
        s = self.state
        self.run.wait()  # the checkpoint of the state that scores is on disk before any score is
        todo = [t for t in s.pool if t not in self.scored_now()]
        archs = [parse_arch(t, self.cfg.space) for t in todo]
        for chunk in self.source.score(archs, self.monitor) if todo else ():
            self.keep([self.query(todo[i], result, len(self.records) + k + 1) for k, (i, result) in enumerate(chunk)])
        mine = [self.latest[t] for t in s.pool]
        values = np.array([r["score"] for r in mine if r["score"] is not None], float)
        if not len(self.view()):
            first = next(r["failed"] for r in mine if "failed" in r)
            raise NaoWsError(f"every candidate failed (first error: {first}); see log.txt in {self.run.path}")
        best = max(self.view(), key=lambda t: self.latest[t]["score"])
        top = np.sort(values)[::-1]
        stats = {"scored": len(mine), "failed": len(mine) - len(values), "mean": float(values.mean()) if len(values)
                 else math.nan, "max": float(top[0]) if len(top) else math.nan,
                 "top10_mean": float(top[:10].mean()) if len(top) else math.nan}
        self.log({"phase": "score", **stats, "best": best, "best_score": self.latest[best]["score"]})
        self.run.write_json("best.json", self.best_record(best))
        s.phase = "finish" if self.source.finished(s.round + 1, len(self.records)) else "propose"

    def query(self, text: str, result: dict, number: int) -> dict:
        s = self.state
        return {"query": number, "round": s.round, "arch": text,
                "canonical": canonical_text(self.space, parse_arch(text, self.cfg.space)), "origin": s.origin[text],
                **result, **s.info.get(text, {})}

    def propose(self) -> None:
        """The strategy's proposals, topped up with random ones, make the next round's pool."""
        s = self.state
        n = self.source.round_size(self.strategy, len(self.records))
        known = {r["canonical"] for r in self.records}
        self.strategy.metrics = {}
        new = self.strategy.propose(self.history(), n, known, self.rng)
        extra = unique_random(self.space, n - len(new) + self.source.refill, known, self.rng)
        proposals = new + [Proposal(a, "random") for a in extra]
        if not proposals:
            raise NaoWsError(f"strategy {self.cfg.strategy} found no unseen architecture after {len(self.records)} "
                             "queries: the space is exhausted")
        self.log({"phase": "propose", "proposed": len(new), "random": len(extra), **self.strategy.metrics})
        keep = []
        if self.source.stale:  # the pool keeps its best (reference §2.2)
            keep = sorted(s.pool, key=lambda t: -self.latest[t]["score"])[: self.source.initial - len(proposals)]
        self.add_to_pool(proposals, keep)
        s.round += 1
        s.phase = "advance"
        self.checkpoint()

    def finish(self) -> None:
        """Re-rank the best few one at a time (a checkpoint after each), then write best.json."""
        s = self.state
        top = sorted(self.view(), key=lambda t: -self.latest[t]["score"])[: self.source.finalists()]
        if len(s.final) < len(top):
            text = top[len(s.final)]
            result = self.source.rerank(parse_arch(text, self.cfg.space), self.monitor)
            s.final.append({"arch": text, "query_score": self.latest[text]["score"], **result})
            self.log({"phase": "rerank", **s.final[-1]})
            self.checkpoint()
            return
        best = max(s.final, key=lambda r: r["score"])["arch"] if s.final else top[0] if top else \
            max(self.view(), key=lambda t: self.latest[t]["score"])
        s.result = self.best_record(best, final=True)
        self.run.write_json("best.json", s.result)
        s.phase = "done"
        self.checkpoint()

    def best_record(self, text: str, final: bool = False) -> dict:
        """best.json: the architecture, its score (the re-ranking's where the source re-ranks), its latest query
        record, and at the end what the source adds (a table's test accuracy, read only now)."""
        arch, record = parse_arch(text, self.cfg.space), self.latest[text]
        rerank = next((r for r in self.state.final if r["arch"] == text), None)
        out = {"arch": self.space.to_json(arch), "text": text, "canonical": record["canonical"],
               "score": rerank["score"] if rerank else record["score"], "strategy": self.cfg.strategy,
               "space": self.cfg.space, "source": source_kind(self.cfg),
               "query": record}
        if self.source.finalists():
            out["rerank"] = rerank
        if final:
            fields, curves = self.source.summary(record, [r for r in self.records if r["score"] is not None])
            out.update(fields)
            if curves:
                self.monitor.curves("final", curves)
        return out


PHASES = {"advance": Search.advance, "score": Search.score, "propose": Search.propose, "finish": Search.finish}


def run(cfg, run_dir: RunDir, resume: bool = False, progress: bool = True, source: ScoreSource | None = None) -> dict:
    """Run (or resume) the search ``cfg`` in ``run_dir``; return ``best.json``'s record. ``source``: a score
    source built by the caller (tests pass one with a stand-in for candidate training)."""
    check_config(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    ckpt = resumable(run_dir) if resume else None
    if ckpt is not None:
        restore = {name: f"reinstall the nao-ws version the run started with (the built-in table is {path})"
                   for name, path in BUILT_IN.items()}
        check_files_unchanged(run_dir.path, ckpt.get("inputs", {}), input_files(cfg), restore)
    source = source if source is not None else make_source(cfg)
    monitor = Monitor(run_dir.path, progress=progress)
    try:
        search = Search(cfg, run_dir, monitor, source)
        if ckpt is not None:
            search.restore(ckpt)
            run_dir.log(f"resumed in round {search.state.round}, phase {search.state.phase}, after "
                        f"{len(search.records)} scores")
        else:
            search.start()
        with monitor.bar(total=source.total, desc="search", initial=search.step(), leave=True) as bar:
            while search.state.phase != "done":
                before = search.step()
                try:
                    PHASES[search.state.phase](search)
                except Diverged as e:
                    search.roll_back(str(e))
                bar.update(search.step() - before)
    finally:
        source.close()
        monitor.close()
        run_dir.wait()  # the last checkpoint is complete, or its error raised, before the run returns
    return search.state.result
