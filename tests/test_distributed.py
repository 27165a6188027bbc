"""Data-parallel final training on CPU, through torchrun with gloo: two processes train as one with the same global
batch, a killed two-process run resumes exactly, and a failing or stuck process ends the job with one line; the
data plan does not depend on the number of processes."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nao_ws.data.batches import ImageBatches
from nao_ws.data.images import load_images
from nao_ws.runs import RunDir

REPO = Path(__file__).resolve().parents[1]
# 2 epochs of 5 steps on the bundled sample; no dropout or drop-path (each process draws its own masks), SyncBN
# (BN over each process's half would be another training), a small lr: the network amplifies rounding less
SMOKE = ["train", "--task", "cifar10-sample", "--preset", "smoke", "--epochs", "2", "--batch-size", "100", "--channels",
         "4", "--device", "cpu", "--no-progress", "--drop-path-keep", "1", "--head-keep", "1", "--lr", "0.005",
         "--sync-bn"]
HOOKED = """
import os, signal, sys, time
from nao_ws.cli import main
from nao_ws.runs import folder
from nao_ws.train import cnn
rank = int(os.environ["RANK"])
if sys.argv[1] == "kill":  # rank 0 dies the moment its checkpoint after the first epoch is on disk
    save = folder.RunDir.save_checkpoint
    def killing_save(self, state, step, *args, **kwargs):
        path = save(self, state, step, *args, **kwargs)
        if len(self.read_jsonl("metrics.jsonl")) == 1:
            self.wait()
            os.kill(os.getpid(), signal.SIGKILL)
        return path
    folder.RunDir.save_checkpoint = killing_save
if sys.argv[1] == "stick" and rank == 1:  # rank 1 stops answering when training begins
    cnn.CnnTrainer.train_epoch = lambda self: time.sleep(600)
main(sys.argv[2:])
"""


def nao_ws(args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nao_ws", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def torchrun(tmp_path, hook: str, args, timeout=300) -> subprocess.CompletedProcess:
    """``nao-ws <args>`` in two processes started by torchrun itself, each with ``HOOKED``'s ``hook``."""
    script = tmp_path / "hooked.py"
    script.write_text(HOOKED)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "--max-restarts", "0", str(script), hook, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)


def weights(run: Path, epoch: int) -> dict:
    state = torch.load(run / "checkpoints" / f"ckpt-{epoch:010d}.pt", weights_only=True)
    return {k: v for k, v in state["trainer"]["model"].items() if v.is_floating_point() and "running" not in k}


def flat(w: dict) -> torch.Tensor:
    return torch.cat([v.flatten() for v in w.values()])


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """An uninterrupted two-process run (``nao-ws train --nproc 2``) and the JSON it printed."""
    out = tmp_path_factory.mktemp("two") / "run"
    p = nao_ws(SMOKE + ["--nproc", "2", "--output", out])
    assert p.returncode == 0, p.stderr
    return out, json.loads(p.stdout.strip().splitlines()[-1])


def test_two_processes_train_as_one_with_the_same_global_batch(two, cli, tmp_path):
    """After an epoch the weights of one process and of two differ by about what rounding makes of them (a 1e-7
    change of the inputs moves them by 8% of an epoch's update; BN over each process's half, 50%)."""
    one = tmp_path / "one"
    code, _, err = cli(SMOKE + ["--output", one])
    assert code == 0, err
    run, result = two
    w1, w2 = weights(one, 1), weights(run, 1)
    update = flat(weights(one, 2)) - flat(w1)
    assert (flat(w2) - flat(w1)).norm() < 0.25 * update.norm()
    first = [RunDir(r).read_jsonl("metrics.jsonl")[0] for r in (one, run)]
    assert first[1]["train_loss"] == pytest.approx(first[0]["train_loss"], rel=5e-3)
    assert first[1]["train_acc"] == pytest.approx(first[0]["train_acc"], abs=0.02)
    assert result["test_acc"] == pytest.approx(json.loads((one / "metrics.json").read_text())["test_acc"], abs=0.02)
    state = RunDir(run).load_latest_checkpoint()
    assert state["processes"] == 2 and len(state["process_rng"]) == 2
    assert "2 processes" in (run / "log.txt").read_text()
    assert sorted(p.name for p in (run / "tb").iterdir())  # TensorBoard from rank 0


def test_a_killed_two_process_run_resumes_exactly(two, tmp_path, tb_scalars, jsonl):
    """Rank 0 SIGKILLed right after its checkpoint of epoch 1: torchrun stops rank 1; resumed with two processes
    the run ends with the weights, metrics and curves of the uninterrupted one."""
    cut = tmp_path / "cut"
    start = time.time()
    killed = torchrun(tmp_path, "kill", SMOKE + ["--output", cut])
    assert killed.returncode != 0 and time.time() - start < 120
    assert [r["epoch"] for r in RunDir(cut).read_jsonl("metrics.jsonl")] == [1]
    resumed = nao_ws(["train", "--resume", cut, "--nproc", "2", "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr
    run, result = two
    assert json.loads(resumed.stdout.strip().splitlines()[-1]) == result
    for (key, a), b in zip(weights(run, 2).items(), weights(cut, 2).values()):
        assert torch.equal(a, b), key
    assert jsonl.untimed(jsonl(cut / "metrics.jsonl")) == jsonl.untimed(jsonl(run / "metrics.jsonl"))
    assert tb_scalars(cut) == tb_scalars(run)


def test_language_models_train_as_one_and_resume_with_another_process_count(data, cli, tmp_path, jsonl):
    """PTB in two processes (the batch's columns split between them) trains as one process does; killed after its
    first epoch and resumed with one process, it ends as a one-process run: the windows, the hidden state of
    every column and the optimiser carry over to another number of processes (no dropout: each process draws
    its own masks)."""
    args = ["train", "--task", "ptb", "--preset", "smoke", "--data-dir", data("ptb-tiny"), "--emb-size", "12",
            "--batch-size", "128", "--bptt", "20", "--eval-batch-size", "50", "--test-batch-size", "50", "--epochs",
            "2", "--device", "cpu", "--no-progress", "--dropout-out", "0", "--dropout-hidden", "0", "--dropout-x",
            "0", "--dropout-emb-out", "0"]
    code, out, err = cli(args + ["--output", tmp_path / "one"])
    assert code == 0, err
    one = json.loads(out.strip().splitlines()[-1])
    assert torchrun(tmp_path, "kill", args + ["--output", tmp_path / "two"]).returncode != 0
    first = [jsonl(tmp_path / name / "metrics.jsonl")[0] for name in ("one", "two")]
    for key in ("train_loss", "valid_loss"):
        assert first[1][key] == pytest.approx(first[0][key], rel=1e-5)
    code, out, err = cli(["train", "--resume", tmp_path / "two", "--no-progress"])
    assert code == 0, err
    resumed = json.loads(out.strip().splitlines()[-1])
    assert resumed["steps"] == one["steps"]
    for key in ("valid_loss", "test_loss"):
        assert resumed[key] == pytest.approx(one[key], rel=1e-5)
    assert "resumed with 1 process from a checkpoint of 2" in (tmp_path / "two" / "log.txt").read_text()


def test_a_stuck_process_stops_the_job_after_the_timeout(tmp_path):
    """Rank 1 stops answering: rank 0's collective gives up after --dist-timeout, its one line says why, torchrun
    ends the job."""
    start = time.time()
    p = torchrun(tmp_path, "stick", SMOKE + ["--output", tmp_path / "run", "--dist-timeout", "3"])
    assert p.returncode != 0 and time.time() - start < 120
    lines = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith("error: rank 0: no answer from the other processes within "
                                                   "--dist-timeout"), p.stderr


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "101"], "must split evenly over the 2 processes"),
    pytest.param(["--device", "cuda"], "no CUDA device is visible",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_impossible_process_counts_are_one_line_errors(flags, message, cli, tmp_path):
    code, _, err = cli(SMOKE + ["--nproc", "2", "--output", tmp_path / "run"] + flags)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_the_data_plan_does_not_depend_on_the_number_of_processes():
    """Every process draws the same epoch plan and takes its share of each global batch: together they train on
    exactly the augmented batches of one process, and a resumed iterator goes on with the same ones."""
    data = load_images("cifar10-sample", purpose="final")

    def batches(rank, world):
        return ImageBatches(data.train, 100, data.mean, data.std, train=True, cutout=8, generator_seed=3, rank=rank,
                            world=world)

    one = list(batches(0, 1))
    halves = zip(*(list(batches(r, 2)) for r in range(2)))
    for (x, y), ((x0, y0), (x1, y1)) in zip(one, halves, strict=True):
        assert torch.equal(x, torch.cat([x0, x1])) and torch.equal(y, torch.cat([y0, y1]))
    cut = batches(1, 2)
    next(iter(cut))
    state = cut.state_dict()
    again = batches(1, 2)
    again.load_state_dict(state)
    assert torch.equal(next(iter(again))[0], list(batches(1, 2))[1][0])
