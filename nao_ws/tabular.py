"""Search on a tabular benchmark (issue 13): NAS-Bench-201's table as the score source, judged on ground truth.

    nao-ws search --task cifar10 --space nb201 --benchmark nb201-cifar10-12epoch.csv --strategy nao --budget 100

A strategy (``nao_ws.strategies``) proposes cells; the table scores each with its **validation** accuracy;
the budget counts queries of distinct canonical cells (``Nb201Space.canonical``). The test column stays
sealed until the budget is spent: it is read once, for ``best.json``, the report and the test curve.

Tables: the CSV form of ``../shared/data/nb201/`` (README.md: ``index``, ``cellstr`` and ``<task>_valid`` /
``<task>_test`` accuracy columns in percent), or the official NAS-Bench-201 / NATS-Bench (topology) file,
read through its API package (``pip install nats_bench`` or ``nas-bench-201``) at 200 epochs.

Run folder: ``config.json``; ``pool.jsonl`` (one line per query: ``query``, ``arch``, ``canonical``,
``score`` = validation accuracy, ``origin``, ``round``); ``metrics.jsonl`` (one line per round);
``best.json``; ``checkpoints/`` (after every round: the history, the strategy's state and the RNG);
``tb/`` (best-so-far validation accuracy against queries as the search runs, the test accuracy of the
best-by-validation cell against queries once it ends).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supernet.spaces import SpaceError, get_space, parse_arch

from . import plot
from .config import RunConfig, config_to_dict, option
from .errors import NaoWsError
from .monitor import Monitor
from .runs import RunDir, generator_state, resolve_device, set_generator_state
from .strategies import ControllerDriver, NaoStrategy, RandomStrategy, ReaStrategy, canonical_text

TASKS = ("cifar10", "cifar100", "imagenet16")
CHECKPOINT_KIND = "tabular-search"
LOGS = ("pool.jsonl", "metrics.jsonl")  # their records so far ride in every checkpoint
# The official API's dataset names: (validation split, test split) per task (NAS-Bench-201 paper, Sec. 2.3).
API_DATASETS = {"cifar10": ("cifar10-valid", "cifar10"), "cifar100": ("cifar100", "cifar100"),
                "imagenet16": ("ImageNet16-120", "ImageNet16-120")}


# -- tables --------------------------------------------------------------------------------------------------

@dataclass
class Table:
    """Validation and test accuracy (percent) of every cell of one task, by op tuple; the test column is only
    handed out by :meth:`test_accuracy` (called once a search has ended)."""

    task: str
    source: str
    valid: dict
    _test: dict

    def score(self, arch) -> float:
        """The search signal: validation accuracy."""
        return self.valid[arch.ops]

    def test_accuracy(self, arch) -> float:
        return self._test[arch.ops]

    def __len__(self) -> int:
        return len(self.valid)


def load_table(path: str | Path | None, task: str) -> Table:
    """The ``task`` columns of a benchmark file, with one-line errors for every way the file can be wrong.
    Read once per process and file version (``check_config`` reads it before the run folder is made)."""
    p = Path(path) if path else None
    key = (str(p.resolve()), p.stat().st_mtime_ns, task) if p is not None and p.exists() else None
    if key not in _TABLES:
        table = _load_table(path, task)
        if key is None:
            return table
        _TABLES[key] = table
    return _TABLES[key]


_TABLES: dict = {}


def _load_table(path: str | Path | None, task: str) -> Table:
    if not path:
        raise NaoWsError("--benchmark FILE is required with --space nb201: the NAS-Bench-201 table "
                         "(the CSV of ../shared/data/nb201/, or the official benchmark file)")
    if task not in TASKS:
        raise NaoWsError(f"--task {task} has no NAS-Bench-201 columns: use one of {', '.join(TASKS)}")
    p = Path(path)
    if not p.exists():
        raise NaoWsError(f"benchmark file {p} does not exist")
    table = _read_csv(p, task) if p.suffix == ".csv" else _read_api(p, task)
    if len(table) != get_space("nb201").size():
        raise NaoWsError(f"benchmark file {p} has {len(table)} cells; NAS-Bench-201 has 15625: the file is incomplete")
    return table


def _read_csv(p: Path, task: str) -> Table:
    cols = (f"{task}_valid", f"{task}_test")
    sp = get_space("nb201")
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in ("cellstr", *cols) if c not in header]
            if missing:
                other = sorted({c.rsplit("_", 1)[0] for c in header if c.endswith("_valid")})
                other = [t for t in other if f"{t}_test" in header]
                hint = f" (it has {', '.join(other)}: pick --task from those)" if other else ""
                raise NaoWsError(f"benchmark file {p} has no column {', '.join(missing)} for --task {task}{hint}")
            valid, test = {}, {}
            for line, row in enumerate(reader, start=2):
                try:
                    ops = sp.parse(row["cellstr"] or "").ops
                except SpaceError as e:
                    raise NaoWsError(f"benchmark file {p}, line {line}: {e}") from None
                if ops in valid:
                    raise NaoWsError(f"benchmark file {p}, line {line}: cell {row['cellstr']} appears twice")
                try:
                    valid[ops], test[ops] = float(row[cols[0]]), float(row[cols[1]])
                except (TypeError, ValueError):
                    raise NaoWsError(f"benchmark file {p}, line {line}: {cols[0]}/{cols[1]} must be numbers, got "
                                     f"{row[cols[0]]!r}, {row[cols[1]]!r}") from None
                if not (math.isfinite(valid[ops]) and math.isfinite(test[ops])):
                    raise NaoWsError(f"benchmark file {p}, line {line}: accuracies must be finite")
    except UnicodeDecodeError:
        raise NaoWsError(f"benchmark file {p} is not a text CSV file") from None
    except csv.Error as e:
        raise NaoWsError(f"benchmark file {p} is not a readable CSV file ({e})") from None
    return Table(task, str(p), valid, test)


def _read_api(p: Path, task: str) -> Table:
    """The official file through its API package: NATS-Bench's topology set or NAS-Bench-201's, 200 epochs."""
    try:
        from nats_bench import create
    except ImportError:
        create = None
    if create is not None:
        api = create(str(p), "tss", fast_mode=True, verbose=False)
        info = lambda i, dataset: api.get_more_info(i, dataset, hp="200", is_random=False)  # noqa: E731
    else:
        try:
            from nas_201_api import NASBench201API
        except ImportError:
            raise NaoWsError(f"{p} is not a CSV table; reading the official benchmark file needs its API "
                             "package: pip install nats_bench (or nas-bench-201), or pass the CSV form") from None
        api = NASBench201API(str(p), verbose=False)
        info = lambda i, dataset: api.get_more_info(i, dataset, None, False, False)  # noqa: E731  200 epochs
    sp = get_space("nb201")
    valid_set, test_set = API_DATASETS[task]
    valid, test = {}, {}
    for i in range(len(api)):
        ops = sp.parse(api.arch(i)).ops
        valid[ops] = float(info(i, valid_set)["valid-accuracy"])
        test[ops] = float(info(i, test_set)["test-accuracy"])
    return Table(task, str(p), valid, test)


# -- config --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config(RunConfig):
    """A search on a tabular benchmark. NAO's values are the ones measured best on NAS-Bench-201 (issue 13,
    ``benchmarks/nb201.py``); REA's are the issue's (population 20, tournament 5, one-edge mutation)."""

    space: str = option("nb201", "search space: nb201 (NAS-Bench-201's cells, SPEC 8)")
    benchmark: str | None = option(None, "tabular benchmark file: the CSV table or the official NAS-Bench-201 file")
    strategy: str = option("nao", "nao (Algorithm 1 with the controller), random, or rea (regularised evolution)")
    budget: int = option(150, "queries of distinct canonical cells")
    # 10 not 20: best validation found at 100 queries 84.73 against 84.53 (seeds 100-119, benchmarks/nb201.py
    # --first-seed 100; the reported figures use seeds 0-19).
    initial: int = option(10, "nao: random cells queried before the controller takes over")
    per_round: int = option(5, "nao: cells queried per controller round (at least)")
    round_fraction: float = option(0.1, "nao: a round queries at least this fraction of the cells queried so far")
    seeds: int = option(10, "K: top cells the controller moves to generate new ones")
    candidates: int = option(30, "nao: cells generated per round, of which the per-round best predicted are queried")
    controller_epochs: int = option(50, "controller training epochs per round (warm start)")
    select: str = option("predicted", "nao: query the best predicted candidates, or the first found (smallest step)")
    ensemble: int = option(1, "nao: independently initialised controllers whose predictions are averaged")
    population: int = option(20, "rea: population size (aging)")
    tournament: int = option(5, "rea: tournament size")


PRESETS = {
    "paper": {},
    "smoke": {"budget": 20, "initial": 8, "per_round": 4, "seeds": 4, "candidates": 8, "controller_epochs": 20,
              "population": 6, "tournament": 2},
}


def task_defaults(task: str) -> dict:
    if task not in TASKS:
        raise NaoWsError(f"the NAS-Bench-201 search (--space nb201) runs on {', '.join(TASKS)}, not --task {task}")
    return {}


def check_config(cfg: Config) -> None:
    """Impossible option combinations, as one-line errors (the table itself: :func:`load_table`)."""
    task_defaults(cfg.task)
    if cfg.space != "nb201":
        raise NaoWsError(f"a tabular search runs the nb201 space, not --space {cfg.space}")
    if cfg.strategy not in ("nao", "random", "rea"):
        raise NaoWsError(f"--strategy {cfg.strategy} is unknown: use nao, random or rea")
    if cfg.budget > get_space("nb201").num_classes():
        raise NaoWsError(f"--budget {cfg.budget} exceeds the {get_space('nb201').num_classes()} distinct cells "
                         "of NAS-Bench-201")
    if not 1 <= cfg.tournament <= cfg.population:
        raise NaoWsError(f"--tournament {cfg.tournament} must lie between 1 and --population {cfg.population}")
    if cfg.initial < 2 or cfg.candidates < cfg.per_round:
        raise NaoWsError("nao needs --initial >= 2 random cells to fit on and --candidates >= --per-round")
    if cfg.select not in ("predicted", "found"):
        raise NaoWsError(f"--select {cfg.select} is unknown: use predicted or found")
    load_table(cfg.benchmark, cfg.task)


def make_strategy(cfg: Config, space, monitor: Monitor | None):
    if cfg.strategy == "random":
        return RandomStrategy(space)
    if cfg.strategy == "rea":
        return ReaStrategy(space, cfg.population, cfg.tournament)
    driver = ControllerDriver.for_space(space, resolve_device(cfg.device),
                                        train={"epochs": cfg.controller_epochs, "holdout": 0.0},
                                        members=cfg.ensemble, canonical_inputs=True, init_seed=cfg.seed)
    return NaoStrategy(space, driver, initial=cfg.initial, per_round=cfg.per_round, seeds=cfg.seeds,
                       candidates=cfg.candidates, seed=cfg.seed, by_prediction=cfg.select == "predicted",
                       monitor=monitor)


# -- the search ----------------------------------------------------------------------------------------------

class TabularSearch:
    """History of queries, the strategy and the RNG; ``run`` below drives it round by round."""

    def __init__(self, cfg: Config, table: Table, run: RunDir, monitor: Monitor):
        self.cfg, self.table, self.run, self.monitor = cfg, table, run, monitor
        self.space = get_space(cfg.space)
        self.strategy = make_strategy(cfg, self.space, monitor)
        self.rng = np.random.default_rng(cfg.seed)
        self.records: list[dict] = []  # pool.jsonl's lines
        self.rounds = 0

    @property
    def history(self) -> list[tuple]:
        return [(parse_arch(r["arch"], "nb201"), r["score"]) for r in self.records]

    def round(self) -> None:
        """One call of the strategy; every proposal is queried and logged."""
        known = {r["canonical"] for r in self.records}
        n = min(self.strategy.batch, self.cfg.budget - len(self.records))
        if self.cfg.strategy == "nao":  # rounds grow with the history: late refits are the costly ones
            n = min(max(n, int(self.cfg.round_fraction * len(self.records))), self.cfg.budget - len(self.records))
        proposals = self.strategy.propose(self.history, n, known, self.rng)
        if not proposals:
            raise NaoWsError(f"strategy {self.cfg.strategy} found no unseen cell after {len(self.records)} queries")
        for p in proposals:
            canon = canonical_text(self.space, p.arch)
            assert canon not in {r["canonical"] for r in self.records}, "a strategy proposed a known cell"
            record = {"query": len(self.records) + 1, "arch": self.space.format(p.arch), "canonical": canon,
                      "score": self.table.score(p.arch), "origin": p.origin, "round": self.rounds, **p.info}
            self.records.append(record)
            self.run.append_jsonl("pool.jsonl", record)
            self.monitor.scalar("best/valid_accuracy", self.best()["score"], record["query"])
        metrics = {"round": self.rounds, "queries": len(self.records), "best_valid": self.best()["score"],
                   "proposed": len(proposals), **{f"controller_{k}": v for k, v in
                                                  getattr(self.strategy, "last_fit", {}).items()}}
        self.run.append_jsonl("metrics.jsonl", metrics)
        self.rounds += 1

    def best(self) -> dict:
        """The best-by-validation record (ties: the earlier query)."""
        return max(self.records, key=lambda r: r["score"])

    def checkpoint(self) -> None:
        self.monitor.flush()
        self.run.save_checkpoint({"kind": CHECKPOINT_KIND, "config": config_to_dict(self.cfg), "rounds": self.rounds,
                                  "strategy": self.strategy.state_dict(), "rng": generator_state(self.rng)},
                                 step=self.rounds, logs=LOGS)

    def restore(self, ckpt: dict) -> None:
        if ckpt.get("kind") != CHECKPOINT_KIND:
            raise NaoWsError(f"{self.run.path} holds a '{ckpt.get('kind')}' checkpoint, not a tabular search")
        self.rounds = ckpt["rounds"]
        self.strategy.load_state_dict(ckpt["strategy"])
        set_generator_state(self.rng, ckpt["rng"])
        # The logs hold exactly what the checkpoint holds: lines a killed run wrote after it are dropped, lines a
        # cut file lost are written again.
        self.run.restore_logs(ckpt)
        self.records = list(ckpt["logs"]["pool.jsonl"])
        self.monitor.drop_events_from(len(self.records) + 1)

    def finish(self) -> dict:
        """The budget is spent: read the test column (once), write best.json and the test curve."""
        best, best_so_far = None, []
        for r in self.records:
            if best is None or r["score"] > best["score"]:
                best = r
            best_so_far.append(best)
        tests = {r["arch"]: self.table.test_accuracy(parse_arch(r["arch"], "nb201")) for r in {id(b): b for b in
                                                                                          best_so_far}.values()}
        for r, b in zip(self.records, best_so_far):
            self.monitor.scalar("best/test_accuracy", tests[b["arch"]], r["query"])
        arch = parse_arch(best["arch"], "nb201")
        self.monitor.image("best/cell", plot.render(arch), len(self.records))
        result = {"arch": self.space.to_json(arch), "text": best["arch"], "canonical": best["canonical"],
                  "valid_accuracy": best["score"], "test_accuracy": tests[best["arch"]], "query": best["query"],
                  "queries": len(self.records), "strategy": self.cfg.strategy, "task": self.cfg.task,
                  "benchmark": self.table.source}
        self.run.write_json("best.json", result)
        return result


def run(cfg: Config, run_dir: RunDir, monitor: Monitor, resume: bool = False) -> dict:
    """Run (or resume) a tabular search in ``run_dir``; return ``best.json``'s record."""
    check_config(cfg)
    table = load_table(cfg.benchmark, cfg.task)
    search = TabularSearch(cfg, table, run_dir, monitor)
    ckpt = run_dir.load_latest_checkpoint() if resume else None
    if resume:
        if ckpt is None:
            raise NaoWsError(f"{run_dir.path} holds no checkpoint to resume from: start the search again with a "
                             "new --output")
        search.restore(ckpt)
        run_dir.log(f"resumed after {len(search.records)} queries")
    else:
        run_dir.log(f"started: {cfg.task}, nb201 on {table.source}, strategy {cfg.strategy}, budget {cfg.budget}")
        search.checkpoint()
    with monitor.bar(total=cfg.budget, initial=len(search.records), desc=f"{cfg.strategy} queries", leave=True) as bar:
        while len(search.records) < cfg.budget:
            before = len(search.records)
            search.round()
            search.checkpoint()
            bar.update(len(search.records) - before)
            bar.set_postfix(best_valid=f"{search.best()['score']:.2f}")
    return search.finish()
