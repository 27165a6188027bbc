"""Cost of the `paper` search presets on this machine: a few supernet epochs of each search, phase by phase,
extrapolated to the whole preset.

Prints one JSON line per figure; `kind` says whether it was measured here or extrapolated from what was:
  search_train_step_s     seconds per supernet training step (the last measured epoch)        measured
  search_epoch_s          seconds per epoch of the preset's own data (CIFAR-10: 45k images)  extrapolated
  search_score_arch_s     seconds to score one architecture (the whole pool, divided)        measured
  search_controller_s     seconds of one controller fit and pool update                      measured
  search_wall_h           epochs x epoch + scoring rounds x (pool x arch + controller)        extrapolated
The final re-ranking (top 5, short standalone trainings) is not included. The controller's fit grows with
the architectures scored so far; every round is counted at the first round's time (an underestimate).
CIFAR-10 runs on the images there are (default: the 4,000-image sample of the real-data folder); PTB on its
full training text. --quick: the `smoke` presets, smaller still, on bundled or tiny data, one epoch (a dry run, e.g. on CPU).

    python -m benchmarks.search_cost [--task cifar10|ptb] [--epochs 2] [--device auto] [--amp]
                                     [--channels-last] [--tf32] [--quick]
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from nao_ws.config.options import resolve
from nao_ws.monitor import Monitor
from nao_ws.runs import RunDir, seed_everything
from nao_ws.search import driver, options
from nao_ws.search.sources.supernet import SupernetSource
from benchmarks.paths import DATA
from benchmarks.timing import sync

CIFAR_TRAIN_IMAGES = 45_000  # reference §3.1: the 45k/5k split of the paper preset
QUICK = {"pool_size": 4, "new_per_iter": 2, "random_per_iter": 1, "seeds": 2, "controller_epochs": 2,
         "batch_size": 64}  # on top of `smoke`: a dry run of seconds
QUICK_TASK = {"cifar10": {"score_images": 10, "score_batch": 10}, "ptb": {"score_windows": 4}}


def timed_phase(search, phase) -> float:
    sync(search.source.device)
    start = time.perf_counter()
    phase(search)
    sync(search.source.device)
    return time.perf_counter() - start


def measure(task: str, args, folder: Path) -> list[dict]:
    flags = {"task": task, "device": args.device, "amp": args.amp or None, "tf32": args.tf32 or None,
             **({**QUICK, **QUICK_TASK[task]} if args.quick else {})}
    if task == "cifar10":
        flags["channels_last"] = args.channels_last or None
        if not args.quick:
            flags["data_file"] = args.cifar_npz
    else:
        flags["data_dir"] = str(DATA / ("ptb-tiny" if args.quick else "ptb"))
    cls, presets, base = options.config_for(task, None, None)
    cfg = resolve(cls, presets, "smoke" if args.quick else "paper", None, flags, base=base)
    epochs = 1 if args.quick else args.epochs
    measured = replace(cfg, eval_every=epochs)  # the first round's training ends after the epochs measured
    driver.check_config(measured)
    seed_everything(cfg.seed)
    run = RunDir.create(str(folder / task), "search", task)
    monitor = Monitor(run.path, progress=False)
    try:
        search = driver.Search(measured, run, monitor, SupernetSource(measured))
        search.start()
        epoch_s = [timed_phase(search, driver.Search.advance) for _ in range(epochs)]
        search.advance()  # the round's training is over: scoring is next
        score_s = timed_phase(search, driver.Search.score)
        controller_s = timed_phase(search, driver.Search.propose)
    finally:
        monitor.close()
        run.wait()
    ws = search.source.supernet
    steps = len(ws.batches) if task == "cifar10" else len(ws.stream)
    step_s = epoch_s[-1] / steps
    paper_steps = math.ceil(CIFAR_TRAIN_IMAGES / cfg.batch_size) if task == "cifar10" and not args.quick else steps
    arch_s = score_s / cfg.pool_size
    if task == "cifar10":  # the pool was scored on the dev images there are; the preset scores score_images
        arch_s *= cfg.score_images / sum(len(y) for _, y in ws.dev)
    rounds = math.ceil(cfg.epochs / cfg.eval_every)
    wall_s = cfg.epochs * paper_steps * step_s + rounds * cfg.pool_size * arch_s + (rounds - 1) * controller_s
    common = {"task": task, "preset": "smoke" if args.quick else "paper", "device": str(search.source.device),
              "amp": cfg.amp, "tf32": cfg.tf32, "channels_last": getattr(cfg, "channels_last", False)}
    return [
        {"metric": "search_train_step_s", "value": step_s, "kind": "measured", "steps": steps,
         "epochs_measured": epochs, "epoch_s": epoch_s, **common},
        {"metric": "search_epoch_s", "value": paper_steps * step_s, "kind": "extrapolated",
         "steps_per_epoch": paper_steps, **common},
        {"metric": "search_score_arch_s", "value": arch_s, "kind": "measured", "pool": cfg.pool_size,
         "pool_s": score_s, **common},
        {"metric": "search_controller_s", "value": controller_s, "kind": "measured",
         "controller_epochs": cfg.controller_epochs, **common},
        {"metric": "search_wall_h", "value": wall_s / 3600, "kind": "extrapolated", "epochs": cfg.epochs,
         "scoring_rounds": rounds, "excludes": "final re-ranking", **common},
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("cifar10", "ptb"), action="append", help="default: both")
    ap.add_argument("--epochs", type=int, default=2, help="supernet epochs measured")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    ap.add_argument("--channels-last", action="store_true", help="CNN: channels-last (CUDA only)")
    ap.add_argument("--tf32", action="store_true", help="TF32 matmuls (CUDA only)")
    ap.add_argument("--cifar-npz", default=str(DATA / "cifar10" / "cifar10-train4000.npz"))
    ap.add_argument("--quick", action="store_true", help="smoke presets, one epoch")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        for task in args.task or ("cifar10", "ptb"):
            for line in measure(task, args, Path(folder)):
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
