"""CNN supernet speed on real CIFAR-10 images at ref-PT's search configuration and at the `paper` preset.

Prints one JSON line per figure and configuration:
  train_images_per_s      supernet training steps (augmented batches), a random architecture per minibatch,
                          in steady state (after 30 warm-up steps; see WARMUP_STEPS)
  score_archs_per_s       `score` with inherited weights, one fixed 500-image batch for every architecture
  supernet_over_static    time of a supernet step / a step of the same architecture built as a final network
                          of the same size (target <= 1.10)
Configurations: the two columns of reference §3.1 (`nao_ws.config.recipes`): ref-pt = N 3, C 20, batch 64, drop-path keep
0.9; paper = N 2, C 20, batch 160, aux head 0.4, head dropout keep 0.9. For comparison, the authors' code on a 2-core machine of this class:
37-41 images/s training and about 0.11 architectures/s scoring at ref-pt (target: at least twice both).

    python -m benchmarks.cnn_supernet [--quick] [--device auto] [--threads N] [--data FILE.npz] [--config NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
from dataclasses import replace

import numpy as np
import torch

from nao_ws.config.recipes import CNN_REF_PT, CnnSupernet
from nao_ws.search.sources.options import ImageScoring
from nao_ws.data.batches import ImageBatches, fixed_batches
from nao_ws.data.images import load_images
from nao_ws.runs import resolve_device
from benchmarks.paths import DATA
from supernet import cnn
from supernet.nets import NASNetwork
from supernet.spaces import get_space
from benchmarks.timing import timed

DEFAULT_DATA = DATA / "cifar10" / "cifar10-train4000.npz"
CONFIGS = {"ref-pt": replace(CnnSupernet(), **CNN_REF_PT), "paper": CnnSupernet()}
DEV_IMAGES = ImageScoring().score_batch  # one scoring batch of dev images, as ref-PT scores (500)


def _forever(batches: ImageBatches):
    """Training batches across epochs."""
    while True:
        yield from batches


def _sgd(model: torch.nn.Module, c: CnnSupernet) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


# Training is measured in steady state. Over its first ~25 steps (new architectures each) the process's heap
# grows to its working size, every new page faulting on first touch: about 40k page faults a step at first
# against none after 30 steps, which made a cold 20-step window ~10% slower than the steps after it. A
# search runs tens of thousands of steps. The timed window's page faults per step are reported.
WARMUP_STEPS = 30
QUICK_WARMUP_STEPS = 3  # --quick


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bench_config(name: str, c: CnnSupernet, data, device: torch.device, sizes: tuple, amp: bool, seed: int, common: dict):
    steps, archs, repeats, warmup = sizes
    rng = np.random.default_rng(seed)
    pool = [get_space("cnn-ws").sample(rng) for _ in range(max(steps, archs) + warmup)]
    supernet = cnn.Supernet.from_recipe("cnn-ws", c, data.num_classes).to(device)
    if common["channels_last"]:
        supernet.use_channels_last()
    optimizer = _sgd(supernet, c)
    batches = _forever(ImageBatches(data.train, c.batch_size, data.mean, data.std, train=True, device=device,
                                    generator_seed=seed))
    info = {"config": name, "layers": c.layers, "channels": c.channels, "batch_size": c.batch_size, **common}

    def step(model, opt, x, y, arch=None):
        cnn.train_step(model, opt, x, y, arch, grad_clip=c.grad_clip, aux_weight=c.aux_weight, progress=0.5, amp=amp)

    for arch in pool[-warmup:]:
        step(supernet, optimizer, *next(batches), arch)
    faults = _minor_faults()
    seconds = timed(lambda: [step(supernet, optimizer, *next(batches), a) for a in pool[:steps]], device)
    faults = (_minor_faults() - faults) / steps
    print(json.dumps({"metric": "train_images_per_s", "value": steps * c.batch_size / seconds, "steps": steps,
                      "warmup_steps": warmup, "page_faults_per_step": faults, "seconds": seconds, **info}), flush=True)

    dev = fixed_batches(data.valid, DEV_IMAGES, data.mean, data.std, device, limit=DEV_IMAGES)
    cnn.score(supernet, pool[-1:], dev, amp=amp)  # warm-up
    seconds = timed(lambda: cnn.score(supernet, pool[:archs], dev, amp=amp), device)
    print(json.dumps({"metric": "score_archs_per_s", "value": archs / seconds, "archs": archs,
                      "score_images": DEV_IMAGES, "seconds": seconds, **info}), flush=True)

    # same architecture, same batch, alternating supernet and static steps so load changes hit both alike
    x, y = next(batches)
    ratios = []
    for arch in pool[:2]:
        static = NASNetwork.from_recipe(arch, c, data.num_classes).to(device)
        if common["channels_last"]:
            static.use_channels_last()
        static_opt = _sgd(static, c)
        step(static, static_opt, x, y)  # warm-up
        times = {"supernet": [], "static": []}
        for _ in range(repeats):
            times["supernet"].append(timed(lambda: step(supernet, optimizer, x, y, arch), device))
            times["static"].append(timed(lambda: step(static, static_opt, x, y), device))
        ratios.append((statistics.median(times["supernet"]), statistics.median(times["static"])))
    value = sum(s for s, _ in ratios) / sum(t for _, t in ratios)
    print(json.dumps({"metric": "supernet_over_static", "value": value, "archs": len(ratios), "repeats": repeats,
                      "supernet_step_s": [s for s, _ in ratios], "static_step_s": [t for _, t in ratios], **info}),
          flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="npz of CIFAR-10 images (its last 500 score)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    ap.add_argument("--channels-last", action="store_true", help="channels-last memory format (CUDA only)")
    ap.add_argument("--config", choices=sorted(CONFIGS), action="append", help="default: both")
    ap.add_argument("--quick", action="store_true", help="a few steps only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # training steps, scored archs, static-comparison repeats, warm-up steps
    sizes = (3, 2, 2, QUICK_WARMUP_STEPS) if args.quick else (20, 8, 5, WARMUP_STEPS)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    data = load_images("cifar10", purpose="search", npz_path=args.data, dev_size=DEV_IMAGES)
    common = {"device": str(device), "threads": torch.get_num_threads(), "amp": args.amp and device.type == "cuda",
              "channels_last": args.channels_last and device.type == "cuda",
              "load_avg_1min": os.getloadavg()[0], "quick": args.quick}
    for name in args.config or sorted(CONFIGS, reverse=True):
        bench_config(name, CONFIGS[name], data, device, sizes, common["amp"], args.seed, common)


if __name__ == "__main__":
    main()
