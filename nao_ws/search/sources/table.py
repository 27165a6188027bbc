"""A tabular benchmark as the score source (reference §8): NAS-Bench-201's table, judged on ground truth.

    nao-ws search --task cifar10 --space nb201 --benchmark nb201-12epoch --strategy nao --budget 100

A query scores a cell with its **validation** accuracy; the budget counts queries of distinct canonical cells
(``Nb201Space.canonical``). The test column stays sealed until the budget is spent: it is read once, for
``best.json`` and the final test curve.

Tables: a built-in name (``nb201-12epoch``: the benchmark's 12-epoch accuracies, shipped gzipped with the
package; its source and licence: docs/reference.md §8), the CSV form (``index``, ``cellstr`` and
``<task>_valid`` / ``<task>_test`` accuracy columns in percent; plain or ``.csv.gz``), or the official
NAS-Bench-201 / NATS-Bench (topology) file, read through its API package (``pip install nats_bench`` or
``nas-bench-201``) at 200 epochs.
"""
from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from supernet.spaces import SpaceError, get_space, parse_arch

from ...errors import NaoWsError
from ...runs import resolve_device
from . import ScoreSource
from .options import TABLE_TASKS

# Tables shipped with the package, by the name --benchmark gives them (docs/reference.md §8: source, licence)
BUILT_IN = {"nb201-12epoch": Path(__file__).resolve().parents[2] / "data" / "assets" / "nb201-cifar10-12epoch.csv.gz"}
# The official API's dataset names: (validation split, test split) per task (NAS-Bench-201 paper, Sec. 2.3).
API_DATASETS = {"cifar10": ("cifar10-valid", "cifar10"), "cifar100": ("cifar100", "cifar100"),
                "imagenet16": ("ImageNet16-120", "ImageNet16-120")}


@dataclass
class Table:
    """Validation and test accuracy (percent) of every cell of one task, by op tuple; the test column is only
    handed out by :meth:`test_accuracy` (called once a search has ended)."""

    task: str
    source: str
    valid: dict
    _test: dict
    index: dict = field(default_factory=dict)  # op tuple -> the cell's index in the benchmark (when the file has one)

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
    p = BUILT_IN.get(str(path), Path(path)) if path else None
    by_name = str(path) in BUILT_IN  # the table's source is its name, not its path
    key = (by_name, str(p.resolve()), p.stat().st_mtime_ns, task) if p is not None and p.exists() else None
    if key not in _TABLES:
        table = _load_table(path, task)
        if key is None:
            return table
        _TABLES[key] = table
    return _TABLES[key]


_TABLES: dict = {}


def _load_table(path: str | Path | None, task: str) -> Table:
    if not path:
        raise NaoWsError("--benchmark is required with --space nb201: the built-in table nb201-12epoch, a CSV "
                         "table, or the official benchmark file")
    if task not in TABLE_TASKS:
        raise NaoWsError(f"--task {task} has no NAS-Bench-201 columns: use one of {', '.join(TABLE_TASKS)}")
    p = BUILT_IN.get(str(path), Path(path))
    if not p.exists():
        hint = f" (built-in tables: {', '.join(BUILT_IN)})" if not p.suffix else ""
        raise NaoWsError(f"benchmark file {p} does not exist{hint}")
    csv_form = p.suffix == ".csv" or p.name.endswith(".csv.gz")
    table = _read_csv(p, task) if csv_form else _read_api(p, task)
    if str(path) in BUILT_IN:
        table.source = str(path)
    if len(table) != get_space("nb201").size():
        raise NaoWsError(f"benchmark file {p} has {len(table)} cells; NAS-Bench-201 has 15625: the file is incomplete")
    return table


# The CSV form's columns (docs/reference.md §8), and its numbers: ASCII digits, no '_', sign or other scripts
COLUMNS = ("index", "cellstr", *(f"{t}_{split}" for t in TABLE_TASKS for split in ("valid", "test")))
_INDEX = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _read_csv(p: Path, task: str) -> Table:
    cols = (f"{task}_valid", f"{task}_test")
    sp = get_space("nb201")
    try:
        with _open_text(p) as fh:
            reader = csv.reader(fh)
            header = _check_header(p, next(reader, []), task)
            valid, test, index, official = {}, {}, {}, _official_index(p)
            for line, fields in enumerate(reader, start=2):
                if not fields:  # a blank line, as csv.DictReader skips it
                    continue
                if len(fields) != len(header):
                    raise NaoWsError(f"benchmark file {p}, line {line}: {len(fields)} values under {len(header)} "
                                     "columns: the row is cut or has extra values")
                row = dict(zip(header, fields))
                try:
                    ops = sp.parse(row["cellstr"]).ops
                except SpaceError as e:
                    raise NaoWsError(f"benchmark file {p}, line {line}: {e}") from None
                if ops in valid:
                    raise NaoWsError(f"benchmark file {p}, line {line}: cell {row['cellstr']} appears twice")
                valid[ops], test[ops] = (_percent(p, line, row, c) for c in cols)
                if "index" in row:
                    index[ops] = _index(p, line, row, official.get(ops))
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error):
        raise NaoWsError(f"benchmark file {p} is not a text CSV file") from None
    except csv.Error as e:
        raise NaoWsError(f"benchmark file {p} is not a readable CSV file ({e})") from None
    return Table(task, str(p), valid, test, index)


def _check_header(p: Path, header: list, task: str) -> list:
    """The header row: columns of the CSV form only, each once, with ``cellstr`` and the task's two."""
    missing = [c for c in ("cellstr", f"{task}_valid", f"{task}_test") if c not in header]
    if missing:
        other = sorted({c.rsplit("_", 1)[0] for c in header if c.endswith("_valid")})
        other = [t for t in other if f"{t}_test" in header]
        hint = f" (it has {', '.join(other)}: pick --task from those)" if other else ""
        raise NaoWsError(f"benchmark file {p} has no column {', '.join(missing)} for --task {task}{hint}")
    unknown = next((c for c in header if c not in COLUMNS), None)
    if unknown is not None:
        raise NaoWsError(f"benchmark file {p} has a column {unknown[:40]!r}, which the table form does not name: "
                         f"remove it (columns: {', '.join(COLUMNS)})")
    twice = next((c for i, c in enumerate(header) if c in header[:i]), None)
    if twice is not None:
        raise NaoWsError(f"benchmark file {p} has the column {twice} twice: keep one")
    return header


def _percent(p: Path, line: int, row: dict, column: str) -> float:
    """An accuracy: a decimal number in ASCII digits from 0 to 100 (``float`` would also read '1_0', '+5', ' 5',
    other scripts' digits, 'nan' and 'inf')."""
    text = row[column]
    if not _NUMBER.fullmatch(text):
        raise NaoWsError(f"benchmark file {p}, line {line}: {column} must be a number in digits 0-9, got "
                         f"{text[:40]!r}")
    value = float(text)
    if not 0 <= value <= 100:
        raise NaoWsError(f"benchmark file {p}, line {line}: accuracies are percentages from 0 to 100, got {column} "
                         f"{text}: the file is damaged or in other units")
    return value


def _index(p: Path, line: int, row: dict, official: int | None) -> int:
    """The benchmark's index of the row's cell: digits 0-9, and ``official``, the one the built-in table (the
    benchmark's own numbering) gives the cell, unless None (the built-in table itself)."""
    text = row["index"]
    if not _INDEX.fullmatch(text):
        raise NaoWsError(f"benchmark file {p}, line {line}: index must be an integer in digits 0-9, got {text[:40]!r}")
    if official is not None and int(text) != official:
        raise NaoWsError(f"benchmark file {p}, line {line}: index {text} disagrees with the benchmark's index "
                         f"{official} of cell {row['cellstr']}: fix the index column, or remove it")
    return int(text)


def _official_index(p: Path) -> dict:
    """Op tuple -> the benchmark's index, from the built-in table (empty while reading the built-in table itself)."""
    built_in = BUILT_IN["nb201-12epoch"]
    return {} if p.resolve() == built_in.resolve() else load_table("nb201-12epoch", TABLE_TASKS[0]).index


def _open_text(p: Path):
    """The CSV's text, gunzipped on the fly for a ``.gz`` file."""
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="")
    return open(p, newline="", encoding="utf-8")


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
    valid, test, index = {}, {}, {}
    for i in range(len(api)):
        ops = sp.parse(api.arch(i)).ops
        valid[ops] = float(info(i, valid_set)["valid-accuracy"])
        test[ops] = float(info(i, test_set)["test-accuracy"])
        index[ops] = i
    return Table(task, str(p), valid, test, index)


def check_config(cfg) -> None:
    """What cannot work, as one-line errors (the table itself: :func:`load_table`)."""
    if cfg.task not in TABLE_TASKS:
        raise NaoWsError(f"the NAS-Bench-201 table has columns for {', '.join(TABLE_TASKS)}, not --task {cfg.task}")
    if cfg.space != "nb201":
        raise NaoWsError(f"a tabular search runs the nb201 space, not --space {cfg.space}")
    if cfg.budget > get_space("nb201").num_classes():
        raise NaoWsError(f"--budget {cfg.budget} exceeds the {get_space('nb201').num_classes()} distinct cells "
                         "of NAS-Bench-201")
    load_table(cfg.benchmark, cfg.task)


class TableSource(ScoreSource):
    """Lookups of the table's validation column; the test column only in ``summary``, once the budget is spent."""

    reward_scale = 0.01  # the table's accuracies are percentages

    def __init__(self, cfg):
        self.cfg, self.table = cfg, load_table(cfg.benchmark, cfg.task)
        self.initial, self.total = min(cfg.initial, cfg.budget), cfg.budget
        self.device = resolve_device(cfg.device)

    def round_size(self, strategy, scored: int) -> int:
        return min(strategy.batch(scored), self.cfg.budget - scored)

    def finished(self, rounds: int, scored: int) -> bool:
        return scored >= self.cfg.budget

    def score(self, archs: Sequence, monitor):
        yield [(i, {"score": self.table.score(a)}) for i, a in enumerate(archs)]

    def summary(self, best: dict, queries: Sequence[dict]) -> tuple[dict, dict]:
        """The test accuracy of the best cell, and of the best-by-validation cell after every query."""
        test, curve, leader = {}, [], None
        for r in queries:
            if leader is None or r["score"] > leader["score"]:
                leader = r
            if leader["arch"] not in test:
                test[leader["arch"]] = self.table.test_accuracy(parse_arch(leader["arch"], "nb201"))
            curve.append((r["query"], test[leader["arch"]]))
        fields = {"valid_accuracy": best["score"], "test_accuracy": test[best["arch"]], "queries": len(queries),
                  "task": self.cfg.task, "benchmark": self.table.source,
                  "index": self.table.index.get(parse_arch(best["arch"], "nb201").ops)}
        return fields, {"best/test_accuracy": curve}
