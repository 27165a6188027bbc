"""Four strategies on one weight-sharing supernet, judged by the table: NAO-WS, ENAS, Random-WS and REA-WS on
the NAS-Bench-201 supernet's ``cpu`` preset, at the same supernet training budget.

Each search is ``nao-ws search --task cifar10 --space nb201 --preset cpu --data-file FILE --strategy S --seed N``
(the search never reads the table), in ``--out/<variant>-<strategy>-s<seed>``; a finished folder is reused and a
killed one resumed (``benchmarks.ws_ranking.run_search``). Searches run in ``--workers`` processes of one thread
each. Then one JSON line per figure:

  * ``search``: per search, the table's validation and test accuracy of its ``best.json`` cell (the test
    column only to report), whether that cell has a convolution on some path from the input to the output,
    the search's wall time, and the table's best cell (by validation) among the final pool (``pool_best_*``) and
    among every cell the search scored (``scored_best_*``): what a perfect final choice would have reached, so a
    shortfall can be told apart as selection (the supernet's ranking) or exploration (the strategy's proposals);
  * ``table``: the mean test accuracy of the table's best 1, 10, 50 and 100 cells by validation;
  * ``strategy``: per strategy and variant, the mean and std over seeds of both accuracies, how many runs
    ended on a cell with no parametric op on any input-to-output path (ENAS's collapse on this benchmark),
    the mean wall time, and the means of the two best-cell figures (and of the re-ranked ones, below).

``--rerank K`` measures ``--rerank-top K`` on finished searches without running them again: each search's final
pool's top K (in the order the search ranks them) is trained alone by the search's own re-ranking code and seed,
and the best by that training's dev accuracy is read in the table (``rerank_valid``, ``rerank_test`` in
``search``; one ``rerank`` line per trained cell). The search's loop does not depend on the re-ranking, which
runs after it, so this is what the search with ``--rerank-top K`` would have chosen; the same trainings give
the choice of ``--rerank-top k`` for k = 5, 10, ... below K (``rerank{k}_valid``, ``rerank{k}_test``).
``--rerank-seed-offset`` trains with other seeds, to see how much of a difference is the training's noise.

Run from the repository root: ``python -m benchmarks.ws_search`` (5 seeds each; about 3 hours on 2 CPU cores),
``--seeds 1 --strategies enas`` for one run, ``--variants 'default;enas:entropy_weight=0.01'`` to add variants
of one strategy's options.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.ws_ranking import IMAGES, TABLE, _one_thread, best_on_table, emit, search_job

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


def scored(out: Path) -> tuple[list[dict], list[dict]]:
    """A search folder's final pool (the last round's query records, in the search's order) and every record."""
    from nao_ws.runs.folder import RunDir

    records = [r for r in RunDir(out).read_jsonl("pool.jsonl") if "round" in r and "arch" in r]
    last = max(r["round"] for r in records)
    return [r for r in records if r["round"] == last], records


def best_scored(out: Path, table) -> dict:
    """The table's best cell by validation among a search's final pool and among every cell it scored: validation
    and test accuracy of each (the test column only to report)."""
    from supernet.spaces import parse_arch

    final, records = scored(out)
    figures = {}
    for name, texts in (("pool", {r["arch"] for r in final}), ("scored", {r["arch"] for r in records})):
        cells = [parse_arch(t, "nb201") for t in sorted(texts)]
        best = max(cells, key=table.score)
        figures.update({f"{name}_best_valid": table.score(best), f"{name}_best_test": table.test_accuracy(best),
                        f"{name}_cells": len(cells)})
    return figures


def table_ceiling(table, tops=(1, 10, 50, 100)) -> dict:
    """The table's own scale: the mean test accuracy of its best 1, 10, 50, 100 cells by validation (what a search
    ending in that top reaches on average)."""
    from supernet.spaces import get_space

    space = get_space("nb201")
    ranked = sorted(table.valid, key=lambda ops: -table.valid[ops])
    return {"cells": len(ranked), **{f"top{k}_test_mean": round(float(np.mean(
        [table.test_accuracy(space.make(list(ops))) for ops in ranked[:k]])), 3) for k in tops}}


def rerank_job(job: tuple) -> list[dict]:
    """(folder, K, data file or "" for the search's, re-ranking batch size or 0 for the supernet's, seed offset) ->
    the final pool's top K of a finished search, each trained alone as ``--rerank-top K`` trains it
    (``Nb201Ws.rerank``, the search's seed plus the offset); in a worker process."""
    _one_thread()
    import torch

    from nao_ws.config.options import build_config
    from nao_ws.monitor import Monitor
    from nao_ws.runs.folder import RunDir
    from nao_ws.search.options import Nb201WsSearch
    from nao_ws.search.sources.supernets import Nb201Ws
    from supernet.spaces import parse_arch

    out, k, data_file, batch_size, offset = job
    run = RunDir(out)
    config = run.read_config()
    cfg = build_config(Nb201WsSearch, config, {"device": "cpu", "rerank_batch_size": batch_size or config["batch_size"],
                                               **({"data_file": data_file} if data_file else {})})
    top = sorted(scored(out)[0], key=lambda r: -r["score"])[:k]  # the driver's order
    supernet = Nb201Ws(cfg, torch.device("cpu"))
    return [{"arch": r["arch"], "pool_score": r["score"],
             **supernet.rerank(parse_arch(r["arch"], "nb201"), cfg.seed + offset,
                               Monitor(None, progress=False, echo=False))}
            for r in top]


def rerank_choices(trained: list[dict], table, step: int = 5) -> dict:
    """The table's validation and test accuracy of the cell ``--rerank-top k`` picks from ``trained`` (one
    re-ranking's results, in the search's order), for k = K (``rerank_*``) and k = step, 2 step, ... below K
    (``rerank{k}_*``): --rerank-top k trains the first k of the same order with the same seeds."""
    from supernet.spaces import parse_arch

    figures = {}
    for k in [*range(step, len(trained), step), len(trained)] if trained else ():
        chosen = parse_arch(max(trained[:k], key=lambda r: r["score"])["arch"], "nb201")  # as the driver picks
        tag = "rerank" if k == len(trained) else f"rerank{k}"
        figures.update({f"{tag}_valid": table.score(chosen), f"{tag}_test": table.test_accuracy(chosen)})
    return figures


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
    ap.add_argument("--rerank", type=int, default=0, metavar="K",
                    help="also re-rank each finished search's top K by standalone training (0: off)")
    ap.add_argument("--rerank-batch-size", type=int, default=0,
                    help="batch size of that training (0: the search's supernet batch)")
    ap.add_argument("--rerank-seed-offset", type=int, default=0,
                    help="train with the search's seed plus this (0: the seed the search itself uses)")
    args = ap.parse_args(argv)

    from concurrent.futures import ProcessPoolExecutor

    from nao_ws.search.sources.table import load_table
    from supernet.spaces import parse_arch

    strategies = [s for s in args.strategies.split(",") if s]
    jobs = []
    for name, only, overrides in map(parse_variant, args.variants.split(";")):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for s in strategies if only is None else [only]:
                jobs.append((name, s, seed, Path(args.out) / f"{name}-{s}-s{seed}", overrides))
    table = load_table(args.table, "cifar10")
    with ProcessPoolExecutor(max(1, args.workers)) as pool:
        seconds = list(pool.map(search_job, [(str(out), s, seed, args.data_file, ov) for _, s, seed, out, ov in jobs]))
        reranked = list(pool.map(rerank_job, [(str(out), args.rerank, args.data_file, args.rerank_batch_size,
                                               args.rerank_seed_offset) for *_, out, _ in jobs])) \
            if args.rerank else [[] for _ in jobs]
    runs = []
    for (name, strategy, seed, out, _), secs, trained in zip(jobs, seconds, reranked):
        best, arch, accuracy = best_on_table(out, table)
        runs.append({"variant": name, "strategy": strategy, "seed": seed, **accuracy,
                     "parametric_path": parametric_path(arch),
                     "seconds": round(secs, 1) if secs else None, **best_scored(out, table)})
        for r in trained:
            cell = parse_arch(r["arch"], "nb201")
            emit(figure="rerank", run=str(out), arch=r["arch"], pool_score=r["pool_score"], score=r["score"],
                 valid_loss=r["valid_loss"], seconds=round(r["seconds"], 1), table_valid=table.score(cell),
                 table_test=table.test_accuracy(cell))
        runs[-1].update(rerank_choices(trained, table))
        emit(figure="search", run=str(out), best=best["text"], **runs[-1])
    emit(figure="table", **table_ceiling(table))
    for key in dict.fromkeys((r["variant"], r["strategy"]) for r in runs):
        mine = [r for r in runs if (r["variant"], r["strategy"]) == key]
        valid, test = (np.array([r[k] for r in mine]) for k in ("valid", "test"))
        times = [r["seconds"] for r in mine if r["seconds"]]
        emit(figure="strategy", variant=key[0], strategy=key[1], seeds=len(mine),
             valid_mean=round(float(valid.mean()), 3), valid_std=round(float(valid.std()), 3),
             test_mean=round(float(test.mean()), 3), test_std=round(float(test.std()), 3),
             parameter_free=sum(not r["parametric_path"] for r in mine),
             seconds_mean=round(float(np.mean(times)), 1) if times else None,
             **{f"{k}_mean": round(float(np.mean([r[k] for r in mine])), 3)
                for k in mine[0] if k.startswith(("pool_best", "scored_best", "rerank"))})


if __name__ == "__main__":
    main()
