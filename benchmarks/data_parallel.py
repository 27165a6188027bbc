"""Data-parallel final training on this machine: `nao-ws train` in one process against N processes (`--nproc N`),
on an ImageFolder made of the bundled CIFAR-10 sample upscaled to ImageNet's size, with the ImageNet network of
reference §5.3 (NAONet-A, N = 4, F = 42, 224 x 224), SyncBN and a small learning rate. Prints one JSON line per
figure, all measured:
  ddp_weight_gap      |w_N - w_1| / |w_1's update in the next epoch| after the first epoch: how far N processes
                      train from one with the same global batch: near 0 when they train alike (6.5e-6 for two
                      CPU processes with --quick; reduced precision and a longer epoch let rounding grow)
  ddp_epoch_s         seconds of the last epoch, for 1 and for N processes (data loading included)
  ddp_images_per_s    training images per second, for 1 and for N processes
  ddp_speedup         epoch_s(1) / epoch_s(N)
--quick: a few tiny images and a tiny network (the dry run of the GPU check, on CPU with gloo).

    python -m benchmarks.data_parallel [--device cuda] [--nproc 2] [--amp] [--channels-last] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nao_ws.data.images import SAMPLE_NPZ

ROOT = Path(__file__).resolve().parents[1]
# all 500 training images 4 times (15 steps of 128 an epoch) and the 200 test images; quick: 4 and 2 a class
FULL = {"side": 256, "per_class": (50, 20), "copies": 4, "epochs": 3,
        "flags": ["--batch-size", "128", "--data-workers", "6"]}
QUICK = {"side": 72, "per_class": (4, 2), "copies": 1, "epochs": 2,
         "flags": ["--preset", "smoke", "--batch-size", "20", "--data-workers", "1"]}


def image_folder(root: Path, side: int, per_class: tuple[int, int], copies: int) -> Path:
    """The bundled sample as JPEG files of ``side`` pixels: ``per_class`` training and test images of each class,
    each training image ``copies`` times."""
    with np.load(SAMPLE_NPZ) as z:
        splits = (("train", z["x_train"], z["y_train"], per_class[0], copies),
                  ("val", z["x_test"], z["y_test"], per_class[1], 1))
        for split, x, y, n, times in splits:
            for label in range(10):
                folder = root / split / f"n{label:08d}"
                folder.mkdir(parents=True)
                for i, image in enumerate(x[y == label][:n]):
                    big = Image.fromarray(image).resize((side, side), Image.BILINEAR)
                    for c in range(times):
                        big.save(folder / f"{i}-{c}.jpg", quality=90)
    return root


def train(out: Path, data: Path, nproc: int, args, setup: dict) -> None:
    cmd = [sys.executable, "-m", "nao_ws", "train", "--task", "imagenet", "--data-dir", str(data), "--output",
           str(out), "--device", args.device, "--epochs", str(setup["epochs"]), "--lr", "0.01", "--sync-bn",
           "--no-progress", "--nproc", str(nproc), *setup["flags"], *(["--amp"] if args.amp else []),
           *(["--channels-last"] if args.channels_last else [])]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})


def weights(run: Path, epoch: int) -> torch.Tensor:
    state = torch.load(run / "checkpoints" / f"ckpt-{epoch:010d}.pt", weights_only=True)["trainer"]["model"]
    return torch.cat([v.flatten().double() for k, v in state.items() if v.is_floating_point() and "running" not in k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    setup = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="nao-ws-ddp-") as tmp:
        data = image_folder(Path(tmp) / "data", setup["side"], setup["per_class"], setup["copies"])
        runs = {n: Path(tmp) / f"run{n}" for n in (1, args.nproc)}
        for n, out in runs.items():
            train(out, data, n, args, setup)
        one, many = (runs[n] for n in (1, args.nproc))
        gap = (weights(many, 1) - weights(one, 1)).norm() / (weights(one, 2) - weights(one, 1)).norm()
        common = {"kind": "measured", "device": args.device, "quick": args.quick}
        print(json.dumps({"metric": "ddp_weight_gap", "value": float(f"{gap.item():.3g}"), "processes": args.nproc,
                          **common}))
        images = sum(1 for _ in (data / "train").rglob("*.jpg"))
        seconds = {}
        for n, out in runs.items():
            seconds[n] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]["seconds"]
            print(json.dumps({"metric": "ddp_epoch_s", "value": seconds[n], "processes": n, **common}))
            print(json.dumps({"metric": "ddp_images_per_s", "value": round(images / seconds[n], 1), "processes": n,
                              **common}))
        print(json.dumps({"metric": "ddp_speedup", "value": round(seconds[1] / seconds[args.nproc], 3),
                          "processes": args.nproc, **common}))


if __name__ == "__main__":
    main()
