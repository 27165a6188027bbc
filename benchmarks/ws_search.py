"""Four strategies on one weight-sharing supernet, judged by the table: NAO-WS, ENAS, Random-WS and REA-WS on
the NAS-Bench-201 supernet's ``cpu`` preset, at the same supernet training budget.

Each search is ``nao-ws search --task cifar10 --space nb201 --preset cpu --data-file FILE --strategy S --seed N``
(the search never reads the table), in ``--out/<variant>-<strategy>-s<seed>``; a finished folder is reused and a
killed one resumed (``benchmarks.ws_ranking.run_search``). Searches run in ``--workers`` processes of one thread
each. Then one JSON line per figure:

  * ``search``: per search, the table's validation and test accuracy of its ``best.json`` cell (the test
    column only to report), whether that cell has a convolution on some path from the input to the output,
    and the search's wall time;
  * ``strategy``: per strategy and variant, the mean and std over seeds of both accuracies, how many runs
    ended on a cell with no parametric op on any input-to-output path (ENAS's collapse on this benchmark),
    and the mean wall time.

Run from the repository root: ``python -m benchmarks.ws_search`` (5 seeds each; about 3 hours on 2 CPU cores),
``--seeds 1 --strategies enas`` for one run, ``--variants 'default;enas:entropy_weight=0.01'`` to add variants
of one strategy's options.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.ws_ranking import IMAGES, TABLE, best_on_table, emit, search_job

STRATEGIES = ("nao", "enas", "random", "rea")
CONV = ("nor_conv_1x1", "nor_conv_3x3")  # NAS-Bench-201's parametric ops


def parametric_path(arch) -> bool:
    """Whether some path of non-``none`` edges from the cell's input to its output holds a convolution."""
    from supernet.spaces import NB201_EDGES, NB201_OPS

    reached, conv = {0: True}, {0: False}
    for (src, dst), op in zip(NB201_EDGES, arch.ops):
        name = NB201_OPS[op]
        if name != "none" and reached.get(src):
            reached[dst] = True
            conv[dst] = conv.get(dst, False) or conv[src] or name in CONV
    return bool(reached.get(3) and conv.get(3))


def parse_variant(text: str) -> tuple[str, str | None, dict]:
    """'default', or 'STRATEGY:option=value,option=value' (a variant of that strategy only) -> (name, strategy,
    overrides)."""
    if text in ("", "default"):
        return "default", None, {}
    strategy, _, options = text.partition(":")
    return text.replace(":", "-").replace("=", "").replace(",", "-"), strategy, dict(
        kv.split("=", 1) for kv in options.split(","))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/ws_search", help="folder of the searches (reused when run again)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--variants", default="default",
                    help="';'-separated: default, or STRATEGY:option=value,... (that strategy's runs with options)")
    ap.add_argument("--table", default=str(TABLE))
    ap.add_argument("--data-file", default=str(IMAGES))
    ap.add_argument("--workers", type=int, default=2, help="processes (one thread each)")
    args = ap.parse_args(argv)

    from concurrent.futures import ProcessPoolExecutor

    from nao_ws.search.sources.table import load_table

    strategies = [s for s in args.strategies.split(",") if s]
    jobs = []
    for name, only, overrides in map(parse_variant, args.variants.split(";")):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for s in strategies if only is None else [only]:
                jobs.append((name, s, seed, Path(args.out) / f"{name}-{s}-s{seed}", overrides))
    table = load_table(args.table, "cifar10")
    with ProcessPoolExecutor(max(1, args.workers)) as pool:
        seconds = list(pool.map(search_job, [(str(out), s, seed, args.data_file, ov) for _, s, seed, out, ov in jobs]))
    runs = []
    for (name, strategy, seed, out, _), secs in zip(jobs, seconds):
        best, arch, accuracy = best_on_table(out, table)
        runs.append({"variant": name, "strategy": strategy, "seed": seed, **accuracy,
                     "parametric_path": parametric_path(arch),
                     "seconds": round(secs, 1) if secs else None})
        emit(figure="search", run=str(out), best=best["text"], **runs[-1])
    for key in dict.fromkeys((r["variant"], r["strategy"]) for r in runs):
        mine = [r for r in runs if (r["variant"], r["strategy"]) == key]
        valid, test = (np.array([r[k] for r in mine]) for k in ("valid", "test"))
        times = [r["seconds"] for r in mine if r["seconds"]]
        emit(figure="strategy", variant=key[0], strategy=key[1], seeds=len(mine),
             valid_mean=round(float(valid.mean()), 3), valid_std=round(float(valid.std()), 3),
             test_mean=round(float(test.mean()), 3), test_std=round(float(test.std()), 3),
             parameter_free=sum(not r["parametric_path"] for r in mine),
             seconds_mean=round(float(np.mean(times)), 1) if times else None)


if __name__ == "__main__":
    main()
