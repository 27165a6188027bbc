"""NAO-WS against Random-WS at equal budget on real CIFAR-10 images, on a CPU-feasible scale.

Data: the real-data folder's ``cifar10/cifar10-train4000.npz`` (the first 4000 CIFAR-10 training images), split
3500 train / 500 dev (the last 500, ``datasets.NPZ_DEV_SIZE``). Both strategies train the same supernet the
same way and score the same number of architectures; only where new architectures come from differs.

Prints one JSON line per figure:
  * ``strategy``: best and top-10-mean inherited-weight dev accuracy of the final pool, mean and std over
    seeds, for ``nao`` and ``random``;
  * ``predictor``: pairwise accuracy and Kendall tau of a controller fitted on the NAO runs' real scores,
    on held-out architectures, for growing training sets (the paper's Fig. 2(a) on real targets);
  * ``inherited_vs_standalone``: Kendall tau between inherited-weight scores and dev accuracy after short
    standalone training, for architectures spread over one final pool's score range.

Run from the repository root: ``python -m benchmarks.search_quality`` (``--quick`` for a fast check).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from controller import config as ctrl_config
from controller.model import NAO
from controller.train import evaluate, fit
from nao_ws.config.options import build_config, resolve
from nao_ws.data.images import load_images
from nao_ws.runs import RunDir
from nao_ws.search import driver, options
from nao_ws.train import cnn as train_cnn
from nao_ws.train.options import CnnTrainConfig
from benchmarks.paths import DATA
from controller.metrics import kendall_tau
from supernet.spaces import get_space, parse_arch

NPZ = DATA / "cifar10" / "cifar10-train4000.npz"

# The CPU-feasible search (ours; about 2.5 min per search on one core): N = 1, C = 8, 4 epochs with an
# update every 2 (one controller update), a pool of 24 with 8 new + 2 random per update, everything else as
# the `paper` preset's code path.
SEARCH = {"layers": 1, "channels": 8, "batch_size": 64, "epochs": 4, "eval_every": 2, "pool_size": 24,
          "new_per_iter": 8, "random_per_iter": 2, "seeds": 8, "controller_epochs": 150, "score_images": 500,
          "score_batch": 250, "aux_weight": 0.0, "head_keep": 1.0, "rerank_top": 0}
QUICK = {"epochs": 2, "eval_every": 1, "pool_size": 12, "new_per_iter": 4, "random_per_iter": 2, "seeds": 4,
         "controller_epochs": 20}
STANDALONE = {"layers": 1, "channels": 8, "epochs": 2, "batch_size": 64, "cutout": 0, "aux_weight": 0.0,
              "drop_path_keep": 1.0, "head_keep": 1.0}


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def run_search(strategy: str, seed: int, overrides: dict, out: Path) -> tuple[list, list]:
    """One search; the final pool's records and every record of the run."""
    cls, _, base = options.config_for("cifar10", None, None)
    cfg = resolve(cls, {"paper": {}}, "paper", None, {"task": "cifar10", "data_file": str(NPZ), "seed": seed,
                                                      "strategy": strategy, "device": "cpu", **overrides}, base=base)
    run = RunDir.create(str(out / f"{strategy}-{seed}"), "search", "cifar10")
    driver.run(cfg, run, progress=False)
    records = run.read_jsonl("pool.jsonl")
    last = max(r["round"] for r in records)
    return [r for r in records if r["round"] == last], records


def summary(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def predictor_curve(records: list[dict], sizes: list[int], epochs: int, seed: int = 0) -> None:
    """Fit a fresh controller on growing sets of real (architecture, score) pairs; test on a fixed hold-out."""
    space = get_space("cnn-ws")
    latest = {}
    for r in records:  # the latest score of every architecture the NAO runs scored
        latest[(r["run"], r["arch"])] = r["score"]
    keys = sorted(latest)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(keys))
    n_test = max(len(keys) // 5, 2)
    test, pool = order[:n_test], order[n_test:]
    tokens = [space.encode(parse_arch(k[1], "cnn-ws")) for k in keys]
    scores = np.array([latest[k] for k in keys])
    model_cfg, train_cfg, _ = ctrl_config.preset("cnn-ws")
    for n in sizes:
        if n > len(pool):
            break
        torch.manual_seed(seed)
        model = NAO(model_cfg, space.transition_mask)
        idx = pool[:n]
        fit(model, [tokens[i] for i in idx], scores[idx], space, replace(train_cfg, epochs=epochs, holdout=0.0),
            seed=seed)
        m = evaluate(model, [tokens[i] for i in test], scores[test], space)
        emit(figure="predictor", target="real (inherited-weight dev accuracy)", n_train=n, n_test=len(test),
             pairwise_accuracy=m["pairwise_accuracy"], kendall_tau=m["kendall_tau"], epochs=epochs)


def inherited_vs_standalone(final_pool: list[dict], n: int, epochs: int, seed: int = 0) -> None:
    """Kendall tau between inherited scores and short standalone training of ``n`` architectures spread
    evenly over the final pool's score ranking."""
    ranked = sorted(final_pool, key=lambda r: -r["score"])
    picks = [ranked[i] for i in np.linspace(0, len(ranked) - 1, n).round().astype(int)]
    data = load_images("cifar10", npz_path=NPZ, purpose="search")
    recipe = build_config(CnnTrainConfig, {"task": "cifar10", "device": "cpu", "seed": seed, **STANDALONE,
                                             "epochs": epochs})
    inherited, standalone = [], []
    start = time.time()
    for r in picks:
        result = train_cnn.fit_candidate(parse_arch(r["arch"], "cnn-ws"), data, recipe, "cpu", seed)
        inherited.append(r["score"])
        standalone.append(result["valid_acc"])
    emit(figure="inherited_vs_standalone", n_archs=len(picks), kendall_tau=kendall_tau(inherited, standalone),
         standalone_epochs=epochs, inherited=inherited, standalone=standalone, seconds=time.time() - start,
         recipe=STANDALONE)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the figures")
    p.add_argument("--standalone-archs", type=int, default=10)
    p.add_argument("--out", default="runs/search_quality")
    args = p.parse_args(argv)
    if not NPZ.is_file():
        sys.exit(f"missing {NPZ}: the benchmark reads the real-data folder (NAO_WS_TEST_DATA)")
    overrides = {**SEARCH, **(QUICK if args.quick else {})}
    emit(figure="config", data=str(NPZ.name), split="3500/500", seeds=args.seeds, search=overrides,
         threads=torch.get_num_threads())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, nao_records, nao_final = {}, [], None
    for strategy in ("nao", "random"):
        best, top10, seconds = [], [], []
        for seed in range(args.seeds):
            start = time.time()
            final, records = run_search(strategy, seed, overrides, out / time.strftime("%Y%m%d-%H%M%S"))
            seconds.append(time.time() - start)
            scores = sorted((r["score"] for r in final), reverse=True)
            best.append(scores[0])
            top10.append(float(np.mean(scores[:10])))
            if strategy == "nao":
                nao_records += [{**r, "run": seed} for r in records]
                nao_final = nao_final or final
        results[strategy] = {"best": summary(best), "top10_mean": summary(top10)}
        emit(figure="strategy", strategy=strategy, best_dev_acc=summary(best), top10_dev_acc=summary(top10),
             per_seed_best=best, seconds_per_search=float(np.mean(seconds)))
    n_unique = len({(r["run"], r["arch"]) for r in nao_records})
    sizes = [s for s in (100, 200, 300, 400, 500) if s <= 0.8 * n_unique] or [int(0.8 * n_unique)]
    predictor_curve(nao_records, sizes, epochs=20 if args.quick else 300)
    inherited_vs_standalone(nao_final, min(args.standalone_archs, len(nao_final)), epochs=1 if args.quick else STANDALONE["epochs"])


if __name__ == "__main__":
    main()
