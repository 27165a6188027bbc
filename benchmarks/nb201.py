"""Search quality on NAS-Bench-201's table: NAO against random search, regularised evolution, local search and
REINFORCE (ENAS's controller on the table).

Reads the package's built-in 12-epoch table (``--benchmark nb201-12epoch``). Every strategy runs the search driver
on the table as ``nao-ws search --space nb201 --benchmark`` does (its defaults are the command's), on the
validation column; the test column is read only to report. Figures are anytime figures: each (strategy, seed)
search runs to the largest budget once, and a budget B's result is the best-by-validation cell among its first B queries
(no strategy here knows its budget, so this equals a run stopped at B).

One JSON line per figure:
  * ``search``: per strategy and budget, mean and std over seeds of the test accuracy of the
    best-by-validation cell, and of its validation accuracy;
  * ``top1``: per strategy, the mean number of queries until the first cell of the table's top 1% by
    validation accuracy, over the seeds that reached it within the largest budget (and how many did);
  * ``predictor``: Kendall tau and pairwise accuracy of the NAO predictor (the nb201 controller preset,
    canonical inputs) fitted on N random cells, on 1000 other random cells, with a ridge regression on the
    30 one-hot edge-op features (of the raw and of the canonical cells) in the same run, mean over seeds.

Run from the repository root: ``python -m benchmarks.nb201`` (``--quick`` for a fast check).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

TABLE = "nb201-12epoch"  # the built-in table
STRATEGIES = ("nao", "random", "rea", "local", "enas")


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def _single_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def one_search(job: tuple) -> dict:
    """(strategy, seed, budget, table, overrides) -> the run's queries (validation, test of best so far)."""
    strategy, seed, budget, table_path, overrides = job
    _single_thread()
    import tempfile

    from nao_ws.config.options import resolve
    from nao_ws.runs import RunDir
    from nao_ws.search import driver, options
    from nao_ws.search.sources.table import load_table
    from supernet.spaces import parse_arch

    cls, presets, base = options.config_for("cifar10", "nb201", str(table_path), strategy)
    cfg = resolve(cls, presets, "paper", None, {"task": "cifar10", "benchmark": str(table_path), "strategy": strategy,
                                                "budget": budget, "seed": seed, "device": "cpu", **overrides},
                  base=base)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir.create(str(Path(tmp) / "run"), "search", "cifar10")
        driver.run(cfg, run, progress=False)
        records = run.read_jsonl("pool.jsonl")
    table = load_table(table_path, "cifar10")
    return {"strategy": strategy, "seed": seed, "seconds": time.perf_counter() - start,
            "valid": [r["score"] for r in records],
            "test": [table.test_accuracy(parse_arch(r["arch"], "nb201")) for r in records]}


def search_figures(runs: list[dict], budgets: list[int], top1_threshold: float) -> None:
    for strategy in STRATEGIES:
        mine = [r for r in runs if r["strategy"] == strategy]
        if not mine:
            continue
        for b in budgets:
            best = [int(np.argmax(r["valid"][:b])) for r in mine]  # ties: the earlier query
            test = [r["test"][i] for r, i in zip(mine, best)]
            valid = [r["valid"][i] for r, i in zip(mine, best)]
            emit(figure="search", strategy=strategy, budget=b, seeds=len(mine),
                 test_mean=round(float(np.mean(test)), 3), test_std=round(float(np.std(test)), 3),
                 valid_mean=round(float(np.mean(valid)), 3), seconds_per_run=round(float(np.mean(
                     [r["seconds"] for r in mine])), 1))
        hits = [next((q + 1 for q, v in enumerate(r["valid"]) if v >= top1_threshold), None) for r in mine]
        reached = [h for h in hits if h is not None]
        emit(figure="top1", strategy=strategy, max_budget=max(budgets), seeds=len(mine), reached=len(reached),
             mean_queries=round(float(np.mean(reached)), 1) if reached else None)


def predictor_figures(sizes: list[int], seeds: int, epochs: int | None) -> None:
    _single_thread()
    import torch

    from controller.metrics import kendall_tau, pairwise_accuracy
    from nao_ws.search.sources.table import load_table
    from nao_ws.search.strategies.nao import ControllerDriver
    from supernet.spaces import get_space

    space = get_space("nb201")
    table = load_table(TABLE, "cifar10")
    cells = space.all_cells()
    score = np.array([table.score(c) for c in cells])

    def onehot(archs):
        x = np.zeros((len(archs), space.num_edges * len(space.ops) + 1))
        for i, a in enumerate(archs):
            x[i, np.arange(space.num_edges) * len(space.ops) + np.array(a.ops)] = 1
        x[:, -1] = 1  # intercept
        return x

    def ridge(train, test, canonical: bool):
        f = (lambda idx: [space.canonical(cells[i]) for i in idx]) if canonical else (lambda idx: [cells[i] for i in idx])
        x = onehot(f(train))
        w = np.linalg.solve(x.T @ x + np.eye(x.shape[1]), x.T @ score[train])  # L2 weight 1
        return onehot(f(test)) @ w

    for n in sizes:
        figs = {"nao": [], "ridge_onehot": [], "ridge_onehot_canonical": []}
        start = time.perf_counter()
        for seed in range(seeds):
            order = np.random.default_rng(seed).permutation(len(cells))
            train, test = order[:n], order[n:n + 1000]
            train_over = {"holdout": 0.0} if epochs is None else {"holdout": 0.0, "epochs": epochs}
            driver = ControllerDriver.for_space(space, torch.device("cpu"), train=train_over,
                                                canonical_inputs=True, init_seed=seed)
            driver.fit([cells[i] for i in train], score[train], seed=seed)
            preds = {"nao": driver.predict([cells[i] for i in test]), "ridge_onehot": ridge(train, test, False),
                     "ridge_onehot_canonical": ridge(train, test, True)}
            for k, p in preds.items():
                figs[k].append((kendall_tau(p, score[test]), pairwise_accuracy(p, score[test])))
        for model, vals in figs.items():
            tau, acc = np.array(vals).T
            emit(figure="predictor", model=model, train_cells=n, test_cells=1000, seeds=seeds,
                 kendall_tau=round(float(tau.mean()), 3), kendall_tau_std=round(float(tau.std()), 3),
                 pairwise_accuracy=round(float(acc.mean()), 3),
                 seconds=round(time.perf_counter() - start, 1) if model == "nao" else None)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds run from here: tune variants on other seeds than the reported ones")
    ap.add_argument("--budgets", default="50,100,150,300")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--workers", type=int, default=2, help="processes running searches in parallel")
    ap.add_argument("--predictor-seeds", type=int, default=5, help="0: no predictor figures")
    ap.add_argument("--options", default="{}",
                    help='JSON overrides of strategies\' options, e.g. {"nao": {"seeds": 5}} (to try variants)')
    ap.add_argument("--quick", action="store_true", help="2 seeds, budgets 20/40, tiny controller: a smoke check")
    args = ap.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    overrides = json.loads(args.options)
    seeds, pred_sizes, pred_seeds, pred_epochs = args.seeds, [50, 100, 300], args.predictor_seeds, None
    if args.quick:
        budgets, seeds, pred_sizes, pred_seeds, pred_epochs = [20, 40], 2, [50], 1, 20
        overrides["nao"] = {"initial": 10, "per_round": 10, "controller_epochs": 20, **overrides.get("nao", {})}
    from nao_ws.search.sources.table import load_table

    table = load_table(TABLE, "cifar10")
    top1 = float(np.sort(list(table.valid.values()))[::-1][len(table) // 100 - 1])
    jobs = [(s, seed, max(budgets), TABLE, overrides.get(s, {}))
            for s in args.strategies.split(",") for seed in range(args.first_seed, args.first_seed + seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(one_search, jobs))
    search_figures(runs, budgets, top1)
    if pred_seeds:
        predictor_figures(pred_sizes, pred_seeds, pred_epochs)


if __name__ == "__main__":
    main()
