"""``nao-ws report``: what a person reads of search run folders, a text summary and PNG figures.

Per run: the summary (search, best architecture and score, queries, wall time and the time of each phase, from
``config.json``, ``best.json``, ``pool.jsonl`` and ``metrics.jsonl``), ``best.png`` (the best score so far
against queries; on a supernet, whose scores age, the pool's best against supernet epochs; a table's best cell
marked), ``pool.png`` (the scores of each round) and, for NAO, ``controller.png`` (per round, the controller's
Kendall τ, pairwise accuracy and decoder Hamming distance on architectures it never saw, and on its training
set). Several runs add ``compare.png``: their best-so-far curves grouped by strategy, mean ± std over the runs
of a group (seeds), one panel per setting (task, space, score source).
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from supernet.spaces import loads_strict

from .errors import NaoWsError
from .runs import RunDir

CONTROLLER = (("kendall_tau", "Kendall τ"), ("pairwise_accuracy", "pairwise accuracy"),
              ("hamming", "Hamming distance"))  # (metric, axis label) of controller.png's panels


@dataclasses.dataclass
class Run:
    """One search run folder as read: its config, ``best.json``, and both logs' records."""

    path: Path
    config: dict
    best: dict
    pool: list[dict]
    metrics: list[dict]

    @property
    def source(self) -> str:
        return self.best.get("source") or ("table" if self.config.get("benchmark") else "supernet")

    @property
    def setting(self) -> str:
        """What runs must share to be compared: task, space and score source (with the table's or proxy's name)."""
        name = {"table": self.config.get("benchmark"), "proxy": self.config.get("proxy")}.get(self.source)
        source = self.source + (f" ({name})" if name else "")
        return f"{self.config.get('task')} · {self.config.get('space')} · {source}"

    def curve(self) -> tuple[np.ndarray, np.ndarray, str]:
        """(x, best score so far, x label): per query; on a supernet per scoring round, the pool's best."""
        if self.source == "supernet":
            scored = [m for m in self.metrics if m.get("phase") == "score" and m.get("best_score") is not None]
            return (np.array([m["step"] for m in scored], float), np.array([m["best_score"] for m in scored], float),
                    "supernet epochs")
        scores = np.array([r["score"] if r.get("score") is not None else -np.inf for r in self.pool], float)
        return np.arange(1.0, len(scores) + 1), np.maximum.accumulate(scores), "queries"


def read_run(path: str | Path) -> Run:
    """A search's run folder, or a one-line error saying why it cannot be reported."""
    run = RunDir(path)
    if not (run.path / "config.json").is_file():
        raise NaoWsError(f"{run.path} is not a run folder (no config.json): pass folders that nao-ws search wrote")
    config = run.read_config()
    if "strategy" not in config:
        raise NaoWsError(f"{run.path} is not a search's run folder (a training's?): report summarises searches")
    try:
        best = loads_strict((run.path / "best.json").read_bytes())
    except FileNotFoundError:
        raise NaoWsError(f"{run.path} has no best.json yet: the search has not scored a round") from None
    except (OSError, ValueError) as e:
        raise NaoWsError(f"{run.path}/best.json cannot be read ({str(e).splitlines()[0]})") from None
    if not isinstance(best, dict) or "text" not in best or "score" not in best:
        raise NaoWsError(f"{run.path}/best.json is damaged: it names no architecture and score")
    return Run(run.path, config, best, run.read_jsonl("pool.jsonl"), run.read_jsonl("metrics.jsonl"))


def table_best(run: Run) -> float | None:
    """The best validation accuracy in a tabular run's table (None when the table cannot be read now)."""
    from .search.sources.table import load_table

    try:
        return max(load_table(run.config.get("benchmark"), run.config["task"]).valid.values())
    except NaoWsError:
        return None


def summarise(run: Run) -> dict:
    """The figures the summary states, straight from the run's files."""
    phases: dict[str, dict] = {}
    for m in run.metrics:
        p = phases.setdefault(m.get("phase", "?"), {"records": 0, "seconds": 0.0})
        p["records"] += 1
        p["seconds"] += m.get("seconds") or 0.0
    timed = all("seconds" in m for m in run.metrics)
    out = {"run": str(run.path), "task": run.config.get("task"), "space": run.config.get("space"),
           "source": run.source, "strategy": run.config.get("strategy"), "seed": run.config.get("seed"),
           "best": run.best["text"], "score": run.best["score"], "queries": len(run.pool),
           "rounds": 1 + max((r.get("round", 0) for r in run.pool), default=0),
           "wall_seconds": sum(p["seconds"] for p in phases.values()) if timed and phases else None,
           "phases": phases}
    out.update({k: run.best[k] for k in ("valid_accuracy", "test_accuracy", "benchmark") if k in run.best})
    if isinstance(run.best.get("rerank"), dict) and "query_score" in run.best["rerank"]:
        out["pool_score"] = run.best["rerank"]["query_score"]  # the score is the rerank's, not the pool's
    if run.source == "table":
        out["table_best"] = table_best(run)
    if run.source == "proxy":
        out["proxy"] = run.config.get("proxy")
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded (a run of an earlier nao-ws)"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def summary_text(s: dict, figures: list[Path]) -> str:
    """The summary of one run, a few aligned lines."""
    name = s.get("benchmark") or s.get("proxy")
    source = s["source"] + (f" ({name})" if name else "")
    accuracies = ", ".join(f"{k.split('_')[0]} {s[k]:g}" for k in ("valid_accuracy", "test_accuracy") if k in s)
    if s.get("pool_score") is not None:
        accuracies = f"the rerank's, retrained from scratch; its pool score {s['pool_score']:.4g}"
    queries = f"{s['queries']} scores in {s['rounds']} rounds"
    if s.get("table_best") is not None:
        queries += f"; the table's best validation accuracy {s['table_best']:g}"
    phases = ", ".join(f"{name} {_duration(p['seconds'])} ({p['records']} record{'s' * (p['records'] != 1)})"
                       for name, p in s["phases"].items())
    rows = [("search", f"{s['task']} · {s['space']} · {source} · strategy {s['strategy']} · seed {s['seed']}"),
            ("best", s["best"]), ("score", f"{s['score']:g}" + (f" ({accuracies})" if accuracies else "")),
            ("queries", queries), ("wall time", _duration(s["wall_seconds"]) + (f": {phases}" if phases else "")),
            ("figures", ", ".join(str(f) for f in figures) or "none")]
    return "\n".join([f"run {s['run']}"] + [f"  {k:<10} {v}" for k, v in rows])


# -- figures -------------------------------------------------------------------------------------------------

def _figure(rows: int = 1, cols: int = 1, size=(7, 4)):
    """A matplotlib figure without pyplot: no GUI backend, no global state (safe in a notebook)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, path: Path) -> Path:
    """Integer ticks on every x axis (queries, epochs, rounds), then the PNG."""
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        if hi - lo < 2:  # a single round or epoch: one tick at it, not fractions around it
            ax.set_xticks([round((lo + hi) / 2)])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.savefig(path)
    return path


def plot_best(run: Run, best_in_table: float | None, path: Path) -> Path:
    fig, axes = _figure()
    ax = axes[0, 0]
    x, y, label = run.curve()
    finite = np.isfinite(y)
    marker = "." if len(x) <= 60 else None
    if label == "supernet epochs":  # the pool's best at each scoring: the supernet's scores change as it trains
        ax.plot(x[finite], y[finite], marker="o", label=run.config["strategy"])
    else:
        ax.step(x[finite], y[finite], where="post", marker=marker, label=run.config["strategy"])
    if best_in_table is not None:
        ax.axhline(best_in_table, color="tab:red", linestyle="--", label=f"the table's best ({best_in_table:g})")
    ax.set(xlabel=label, ylabel="pool's best score" if label == "supernet epochs" else "best score so far",
           title=f"{run.path.name}: {run.setting}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, path)


def plot_pool(run: Run, path: Path) -> Path:
    by_round = defaultdict(list)
    for r in run.pool:
        if r.get("score") is not None:
            by_round[r.get("round", 0)].append(r["score"])
    rounds = sorted(by_round)
    fig, axes = _figure(size=(max(7.0, min(16.0, 0.25 * len(rounds))), 4))
    ax = axes[0, 0]
    ax.boxplot([by_round[k] for k in rounds], positions=rounds, widths=0.6, manage_ticks=False,
               flierprops={"markersize": 3})
    ax.set(xlabel="round", ylabel="score", title=f"{run.path.name}: scores of each round ({run.setting})")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_controller(run: Run, path: Path) -> Path | None:
    """NAO's controller per round (its ``propose`` records); None when the run has none."""
    records = [m for m in run.metrics if m.get("phase") == "propose" and isinstance(m.get("controller"), dict)]
    if not records:
        return None
    fig, axes = _figure(len(CONTROLLER), 1, size=(7, 7))
    rounds = [m["round"] for m in records]
    for ax, (key, title) in zip(axes[:, 0], CONTROLLER):
        for prefix, what in (("new_", "held out: the last fit on the architectures scored since"),
                             ("train_", "this round's fit on its training set")):
            values = [m["controller"].get(prefix + key) for m in records]
            values = [math.nan if v is None else v for v in values]
            if not all(math.isnan(v) for v in values):
                ax.plot(rounds, values, marker=".", label=what)
        ax.set(ylabel=title)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(f"{run.path.name}: the NAO controller, fitted at each round")
    axes[0, 0].legend(loc="best")
    axes[-1, 0].set_xlabel("round")
    return _save(fig, path)


def _on_grid(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The step curves ``(x, y)`` evaluated on the x values they all reach: (grid, [runs, grid]); NaN before a
    run's first point."""
    end = min(x[-1] for x, _ in curves)
    grid = np.unique(np.concatenate([x[x <= end] for x, _ in curves]))
    values = []
    for x, y in curves:
        i = np.searchsorted(x, grid, side="right") - 1
        values.append(np.where(i >= 0, y[np.maximum(i, 0)], np.nan))
    return grid, np.array(values)


def plot_compare(runs: list[Run], path: Path) -> tuple[Path, list[dict]]:
    """Best-so-far curves of several runs: one panel per setting, one line per strategy (mean ± std over its
    runs). Returns the figure and, per group, the mean and std of its runs' final best scores."""
    settings = defaultdict(lambda: defaultdict(list))
    for run in runs:
        settings[run.setting][run.config["strategy"]].append(run)
    fig, axes = _figure(len(settings), 1, size=(7, 4 * len(settings)))
    groups = []
    for ax, (setting, strategies) in zip(axes[:, 0], settings.items()):
        ws = setting.endswith("supernet")  # curves of the pool's best at each scoring, not a running maximum
        for strategy, members in sorted(strategies.items()):
            curves = [c[:2] for c in (r.curve() for r in members) if len(c[0])]
            if not curves:
                continue
            grid, values = _on_grid(curves)
            values[~np.isfinite(values)] = np.nan
            mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
            label, steps = f"{strategy} ({len(curves)} run{'s' * (len(curves) > 1)})", not ws
            line, = ax.step(grid, mean, where="post", label=label) if steps else ax.plot(grid, mean, marker="o",
                                                                                          label=label)
            if len(curves) > 1:
                ax.fill_between(grid, mean - std, mean + std, step="post" if steps else None, alpha=0.2,
                                color=line.get_color())
            finals = np.array([r.best["score"] for r in members], float)
            groups.append({"setting": setting, "strategy": strategy, "runs": len(members),
                           "score_mean": float(finals.mean()), "score_std": float(finals.std())})
        best_in_table = table_best(next(iter(strategies.values()))[0]) if "· table" in setting else None
        if best_in_table is not None:
            ax.axhline(best_in_table, color="tab:red", linestyle="--", label=f"the table's best ({best_in_table:g})")
        ylabel = "pool's best score" if ws else "best score so far"
        ax.set(xlabel="supernet epochs" if ws else "queries", ylabel=ylabel + " (mean ± std over runs)", title=setting)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    return _save(fig, path), groups


# -- the report ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Report:
    """What ``report`` wrote: its folder, the text it printed, each run's summary, the groups of a comparison
    and every figure."""

    folder: Path
    text: str
    runs: list[dict]
    groups: list[dict]
    figures: list[Path]


def report(paths: list[str | Path], output: str | Path | None = None) -> Report:
    """Summarise and plot the search runs ``paths`` into ``output`` (default: ``RUN/report`` for one run,
    ``report`` in the current folder for several): ``summary.txt``, ``summary.json`` and the PNG figures."""
    if not paths:
        raise NaoWsError("name at least one run folder to report on")
    runs = [read_run(p) for p in paths]
    names = [r.path.name for r in runs]
    if len(set(names)) < len(names):
        raise NaoWsError(f"two runs share the folder name {next(n for n in names if names.count(n) > 1)}: the "
                         "report keeps each run's figures under its name; rename one")
    folder = Path(output) if output is not None else runs[0].path / "report" if len(runs) == 1 else Path("report")
    if folder.exists() and not folder.is_dir():
        raise NaoWsError(f"--output {folder} is a file: name a folder for the report")
    summaries, figures, texts = [], [], []
    for run in runs:
        where = folder if len(runs) == 1 else folder / run.path.name
        where.mkdir(parents=True, exist_ok=True)
        s = summarise(run)
        own = [plot_best(run, s.get("table_best"), where / "best.png"), plot_pool(run, where / "pool.png"),
               plot_controller(run, where / "controller.png")]
        own = [f for f in own if f is not None]
        s["figures"] = [str(f) for f in own]
        summaries.append(s)
        figures += own
        texts.append(summary_text(s, own))
    groups = []
    if len(runs) > 1:
        compare, groups = plot_compare(runs, folder / "compare.png")
        figures.append(compare)
        texts.append("\n".join([f"compare {compare}"] + [
            f"  {g['setting']} · {g['strategy']}: {g['runs']} runs, best score {g['score_mean']:.4g} ± "
            f"{g['score_std']:.2g}" for g in groups]))
    text = "\n\n".join(texts)
    (folder / "summary.txt").write_text(text + "\n")
    (folder / "summary.json").write_text(json.dumps({"runs": summaries, "groups": groups}, indent=2) + "\n")
    return Report(folder, text, summaries, groups, figures)
