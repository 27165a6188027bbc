"""benchmarks/gpu_check.sh's dry path (--device cpu --quick): the plumbing of the GPU check, every figure a
JSON line (the data-parallel step's from two CPU processes), and a failing step failing the whole check."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_dry_path_prints_every_figure_as_json(data):
    data("ptb-tiny"), data("cifar10", "cifar10-train4000.npz")  # what the search measurement reads
    env = {**os.environ, "NAO_WS_TEST_DATA": str(data.root)}
    p = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--quick"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    metrics = {(line["metric"], line.get("task")) for line in lines}
    for task in ("cifar10", "ptb"):
        assert {("search_train_step_s", task), ("search_wall_h", task)} <= metrics
    assert {("rnn_train_step_ops", None), ("cnn_train_step_ops", None)} <= metrics
    ddp = {line["metric"]: line["value"] for line in lines if line["metric"].startswith("ddp_")}
    assert set(ddp) == {"ddp_weight_gap", "ddp_epoch_s", "ddp_images_per_s", "ddp_speedup"}
    assert ddp["ddp_weight_gap"] < 1e-3 and ddp["ddp_speedup"] > 0  # two CPU processes train as one
    wall = [line for line in lines if line["metric"] == "search_wall_h"]
    assert all(line["kind"] == "extrapolated" and line["value"] > 0 for line in wall)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the full check would run")
def test_a_failing_step_fails_the_check():
    p = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cuda"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode != 0 and "no CUDA device visible" in p.stderr
    bad = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--bogus"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
