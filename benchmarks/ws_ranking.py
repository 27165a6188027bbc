"""Weight sharing against ground truth: the NAS-Bench-201 supernet's inherited-weight ranking
against the table, and NAO-WS against Random-WS, on the ``cpu`` preset.

Each search is ``nao-ws search --task cifar10 --space nb201 --preset cpu --data-file FILE`` (no table: the
weight-sharing search never reads it) with the strategy, seed and a variant's options (``--variants``), in
``--out/<variant>-<strategy>-s<seed>``; a finished run folder is reused, a killed one resumed. Searches and
tau scorings run in ``--workers`` processes of one thread each. Then one JSON line per figure:

  * ``proxy``: for each zero-cost proxy (``nao_ws.search.proxies``, on the benchmark's network, C = 16, N = 5,
    one minibatch of 64 training images of ``--data-file``) and each cell set, Kendall tau and Spearman rho
    against the table's validation column, and the seconds per cell. Two sets of ``--cells`` cells: ``spread``
    (one random member of each of as many canonical classes, drawn uniformly, fixed seed) and ``uniform``
    (drawn uniformly from the 15,625 encodings, as a pool would be). Cached in ``--out``;
  * ``tau``: for every run folder, BN scoring mode and cell set, Kendall tau and Spearman rho between the
    run's final inherited-weight scores (both metrics of ``--score-metric``: accuracy, and minus the loss, on
    the same images) and the table's validation column; the same for the #params proxy, a random ranking, and
    the mean rank of minus the loss and the set's best proxy (``combined``);
  * ``search``: per search, the table's validation and test accuracy of its ``best.json`` cell (the test
    column only to report), and its wall time;
  * ``search_mean``: per strategy, the means over seeds.

Run from the repository root, e.g. ``python -m benchmarks.ws_ranking --searches 3`` (NAO-WS and Random-WS,
3 seeds each, with the preset's options), ``--variants 'unsampled=skip;unsampled=decay' --searches 1
--strategies random`` (one supernet per variant), or ``--run DIR --searches 0`` for the tau of finished runs.
``--dry`` prints the plan.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.paths import DATA

TABLE = "nb201-12epoch"  # the built-in table
IMAGES = DATA / "cifar10" / "cifar10-train4000.npz"
PROXY_BATCH = 64  # images of the proxies' minibatch (Abdelfattah et al. 2021)
PAPER_SIZES = (5, 16)  # the benchmark's network, N and C (reference §8): what the #params proxy counts


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def spread_cells(n: int, seed: int) -> list:
    """One random member of each of ``n`` canonical classes drawn uniformly (without replacement)."""
    from supernet.spaces import get_space

    sp = get_space("nb201")
    classes: dict = {}
    for cell in sp.all_cells():
        classes.setdefault(sp.canonical(cell).ops, []).append(cell)
    keys = sorted(classes)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(keys), size=min(n, len(keys)), replace=False)
    return [classes[keys[i]][int(rng.integers(len(classes[keys[i]])))] for i in picked]


def uniform_cells(n: int, seed: int) -> list:
    """``n`` distinct encodings drawn uniformly from the 15,625 (a pool's view of the space)."""
    from supernet.spaces import get_space

    cells = get_space("nb201").all_cells()
    return [cells[i] for i in np.random.default_rng(seed).choice(len(cells), size=n, replace=False)]


def cell_sets(n: int, seed: int) -> dict:
    return {"spread": spread_cells(n, seed), "uniform": uniform_cells(n, seed)}


def proxy_job(job: tuple) -> list[dict]:
    """(cells as text, data file, seed) -> {proxy: value} per cell, in a worker process of one thread."""
    _one_thread()
    from nao_ws.data.images import load_images
    from nao_ws.search import proxies, scoring
    from supernet.spaces import parse_arch

    texts, data_file, seed = job
    images = load_images("cifar10", None, npz_path=data_file)
    archs = [(k, parse_arch(t, "nb201")) for k, t in enumerate(texts)]
    return [{k: r[k] for k in proxies.PROXIES}
            for r in scoring.proxy_scores(archs, list(proxies.PROXIES), images, PROXY_BATCH, seed, "cpu", False)]


def proxy_values(pool, cells: list, data_file: str, seed: int, cache: Path, workers: int) -> tuple[dict, float]:
    """({proxy: values over ``cells``}, seconds per cell), read from ``cache`` when it holds these cells."""
    from supernet.spaces import get_space

    texts = [get_space("nb201").format(c) for c in cells]
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved["cells"] == texts:
            return saved["values"], saved["seconds_per_cell"]
    start = time.perf_counter()
    chunks = [texts[i::max(1, workers)] for i in range(max(1, workers))]
    results = list(pool.map(proxy_job, [(chunk, data_file, seed) for chunk in chunks]))
    by_text = {t: r for chunk, rs in zip(chunks, results) for t, r in zip(chunk, rs)}
    values = {name: [by_text[t][name] for t in texts] for name in results[0][0]}
    seconds = (time.perf_counter() - start) * max(1, workers) / len(texts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"cells": texts, "values": values, "seconds_per_cell": seconds}))
    return values, seconds


def run_search(out: Path, strategy: str, seed: int, data_file: Path, overrides: dict) -> float:
    """The search in ``out`` (started, resumed or already done); its wall time in this call."""
    from nao_ws.cli import main

    if (out / "best.json").is_file() and _done(out):
        return 0.0
    args = ["search", "--resume", str(out)] if (out / "config.json").is_file() else [
        "search", "--task", "cifar10", "--space", "nb201", "--preset", "cpu", "--data-file", str(data_file),
        "--strategy", strategy, "--seed", str(seed), "--output", str(out), "--device", "cpu",
        *[a for k, v in overrides.items() for a in _flag(k, v)]]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(args + ["--no-progress"])
        except SystemExit as e:
            if e.code:
                raise RuntimeError(f"search {out} exited with {e.code}") from None
    return time.perf_counter() - start


def _flag(name: str, value: str) -> list[str]:
    """A variant's option as command-line words: ``--name value``, or ``--name`` / ``--no-name`` for true/false."""
    flag = name.replace("_", "-")
    if value in ("true", "false"):
        return [f"--{flag}" if value == "true" else f"--no-{flag}"]
    return [f"--{flag}", value]


def best_on_table(out: Path, table) -> tuple[dict, object, dict]:
    """A search folder's ``best.json``, its cell, and the table's validation and test accuracy of that cell (the
    test column only to report)."""
    from supernet.spaces import parse_arch

    best = json.loads((out / "best.json").read_text())
    arch = parse_arch(best["text"], "nb201")
    return best, arch, {"valid": table.score(arch), "test": table.test_accuracy(arch)}


def _done(out: Path) -> bool:
    from nao_ws.runs import RunDir

    ckpt = RunDir(out).load_latest_checkpoint()
    return ckpt is not None and ckpt["driver"]["phase"] == "done"


def final_supernet(out: Path, score_bn: str):
    """The run's last supernet (``nao_ws.search.sources.supernets.Nb201Ws``), scoring with ``score_bn``."""
    from nao_ws.config.options import build_config
    from nao_ws.runs import RunDir
    from nao_ws.search.options import Nb201WsSearch
    from nao_ws.search.sources.supernet import SupernetSource

    run = RunDir(out)
    cfg = build_config(Nb201WsSearch, run.read_config())
    source = SupernetSource(dataclasses.replace(cfg, score_bn=score_bn, device="cpu"))
    source.load_state_dict(run.load_latest_checkpoint()["source"])
    return source.supernet


def rank_figures(rankings: dict, table_valid, seed: int) -> dict:
    """Kendall tau and Spearman of each named ranking, and of a random one, against the table."""
    from controller.metrics import kendall_tau, spearman_rho

    rand = np.random.default_rng(seed).permutation(len(table_valid)).astype(float)
    return {name: {"kendall_tau": kendall_tau(pred, table_valid), "spearman": spearman_rho(pred, table_valid)}
            for name, pred in (*rankings.items(), ("random", rand))}


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def search_job(job: tuple) -> float:
    """(folder, strategy, seed, data file, overrides) -> wall seconds; in a worker process, one thread."""
    _one_thread()
    out, strategy, seed, data_file, overrides = job
    return run_search(Path(out), strategy, seed, Path(data_file), overrides)


def tau_job(job: tuple) -> list:
    """(folder, BN modes, {set: cells}, table file, cell seed, {set: best proxy's values}) -> one figure dict per
    BN mode and cell set."""
    _one_thread()
    from nao_ws.monitor import Monitor
    from nao_ws.search.proxies import mean_rank
    from nao_ws.search.sources.table import load_table
    from supernet import nb201
    import torch

    out, modes, sets, table_path, cell_seed, best_proxy = job
    table = load_table(table_path, "cifar10")
    with torch.device("meta"):
        counter = nb201.Supernet(*PAPER_SIZES)
    figures = []
    for mode in modes:
        supernet = final_supernet(Path(out), mode)
        for name, cells in sets.items():
            valid = np.array([table.score(c) for c in cells])
            params = np.array([counter.arch_parameters(c) for c in cells], dtype=float)
            start = time.perf_counter()
            scores = supernet.score(cells, Monitor(None, progress=False))
            loss = -np.array([r["valid_loss"] for r in scores])
            proxy_name, proxy = best_proxy[name]
            figs = rank_figures({"inherited_accuracy": np.array([r["valid_acc"] for r in scores]),
                                 "inherited_loss": loss, "params": params,
                                 "combined": mean_rank(loss, np.nan_to_num(np.array(proxy, float), nan=-np.inf))},
                                valid, cell_seed)
            figures.append({"run": str(out), "score_bn": mode, "cells": name, "combined_with": proxy_name,
                            "score_images": sum(len(y) for _, y in supernet.dev),
                            "seconds": round(time.perf_counter() - start, 1),
                            **{f"{k}_{m}": round(v, 4) for k, f in figs.items() for m, v in f.items()}})
    return figures


def parse_variant(text: str) -> dict:
    """'default' or 'option=value,option=value' -> overrides."""
    if text in ("", "default"):
        return {}
    return dict(kv.split("=", 1) for kv in text.split(","))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/ws_ranking", help="folder of the searches (reused when run again)")
    ap.add_argument("--run", action="append", default=[], help="a finished nb201 run folder: its tau only")
    ap.add_argument("--variants", default="default",
                    help="';'-separated search option sets, e.g. 'default;unsampled=decay;sampling=balanced'")
    ap.add_argument("--searches", type=int, default=3, help="seeds per strategy and variant")
    ap.add_argument("--strategies", default="nao,random")
    ap.add_argument("--tau-strategies", default="random", help="whose runs' final supernets the tau is measured on")
    ap.add_argument("--score-bn", default="batch,recalibrate", help="BN scoring modes the tau is measured with")
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--cell-seed", type=int, default=0)
    ap.add_argument("--table", default=str(TABLE))
    ap.add_argument("--data-file", default=str(IMAGES))
    ap.add_argument("--workers", type=int, default=2, help="processes (one thread each)")
    ap.add_argument("--dry", action="store_true", help="check the options, print the plan, run nothing")
    args = ap.parse_args(argv)

    from concurrent.futures import ProcessPoolExecutor

    from nao_ws.search.sources.table import load_table

    variants = [(v or "default", parse_variant(v)) for v in args.variants.split(";")]
    strategies = [s for s in args.strategies.split(",") if s]
    jobs = [(name, s, seed, Path(args.out) / f"{name}-{s}-s{seed}", overrides)
            for name, overrides in variants for seed in range(args.searches) for s in strategies]
    tau_runs = [Path(r) for r in args.run] + [out for _, s, _, out, _ in jobs if s in args.tau_strategies.split(",")]
    if args.dry:
        emit(figure="plan", searches=[str(j[3]) for j in jobs], tau_runs=[str(r) for r in tau_runs], cells=args.cells)
        return
    table = load_table(args.table, "cifar10")
    start = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.workers)) as pool:
        seconds = list(pool.map(search_job, [(str(out), s, seed, args.data_file, ov) for _, s, seed, out, ov in jobs]))
        searches = []
        for (name, strategy, seed, out, _), secs in zip(jobs, seconds):
            best, _, accuracy = best_on_table(out, table)
            searches.append({"variant": name, "strategy": strategy, "seed": seed, **accuracy})
            emit(figure="search", run=str(out), best=best["text"], inherited=best["query"]["score"],
                 seconds=round(secs, 1), **searches[-1])
        for name, _ in variants:
            for strategy in strategies:
                mine = [s for s in searches if s["strategy"] == strategy and s["variant"] == name]
                if mine:
                    emit(figure="search_mean", variant=name, strategy=strategy, n=len(mine),
                         valid_mean=round(float(np.mean([s["valid"] for s in mine])), 3),
                         test_mean=round(float(np.mean([s["test"] for s in mine])), 3))
        sets = cell_sets(args.cells, args.cell_seed)
        best_proxy = {}
        for name, cells in sets.items():
            cache = Path(args.out) / f"proxies-{name}-{args.cells}-{args.cell_seed}.json"
            values, seconds = proxy_values(pool, cells, args.data_file, args.cell_seed, cache, args.workers)
            valid = np.array([table.score(c) for c in cells])
            taus = {}
            for proxy, v in values.items():
                v = np.nan_to_num(np.array(v, float), nan=-np.inf)  # (a proxy undefined for a cell: last)
                fig = rank_figures({proxy: v}, valid, args.cell_seed)[proxy]
                taus[proxy] = fig["kendall_tau"]
                emit(figure="proxy", cells=name, proxy=proxy, kendall_tau=round(fig["kendall_tau"], 4),
                     spearman=round(fig["spearman"], 4), seconds_per_cell=round(seconds, 2))
            best = max((p for p in taus if p != "params"), key=taus.get)  # chosen on the validation column
            best_proxy[name] = (best, values[best])
        modes = args.score_bn.split(",")
        for figures in pool.map(tau_job, [(str(r), modes, sets, args.table, args.cell_seed, best_proxy)
                                          for r in tau_runs]):
            for f in figures:
                emit(figure="tau", **f)
    emit(figure="wall", seconds=round(time.perf_counter() - start, 1), workers=args.workers)


if __name__ == "__main__":
    main()
