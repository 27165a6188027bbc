"""Checkpoints written off the training thread, and log records appended with one fsync (nao_ws.runs)."""
import os
import threading

import pytest
import torch

from nao_ws.errors import NaoWsError
from nao_ws.runs import RunDir, checkpoint_problem, folder


def test_a_background_checkpoint_holds_the_state_as_it_was_when_asked_for(tmp_path):
    run = RunDir.create(str(tmp_path / "r"), "search", "x")
    model = torch.nn.Linear(3, 4)
    state = {"model": model.state_dict(), "pool": ["a"], "scores": {"a": {"score": 1.0}}}
    run.append_jsonl("pool.jsonl", {"arch": "a"})
    run.save_checkpoint(state, 1, logs=("pool.jsonl",), background=True)
    with torch.no_grad():  # training goes on: tensors, containers and logs change
        model.weight.fill_(7.0)
    state["pool"].append("b")
    state["scores"]["a"]["score"] = 2.0
    run.append_jsonl("pool.jsonl", {"arch": "b"})
    ckpt = run.load_latest_checkpoint()
    assert ckpt["pool"] == ["a"] and ckpt["scores"]["a"]["score"] == 1.0
    assert ckpt["logs"] == {"pool.jsonl": [{"arch": "a"}]}
    assert not (ckpt["model"]["weight"] == 7.0).any()
    torch.nn.Linear(3, 4).load_state_dict(ckpt["model"])  # still a module state dict (its _metadata kept)
    assert checkpoint_problem(run.list_checkpoints()[0]) is None


def test_the_previous_checkpoint_stays_the_latest_until_the_next_is_complete(tmp_path, monkeypatch):
    run = RunDir.create(str(tmp_path / "r"), "search", "x")
    run.save_checkpoint({"step": 1}, 1)
    started, release = threading.Event(), threading.Event()
    write = folder.fsync_write

    def slow_write(path, data):
        started.set()
        assert release.wait(10)
        write(path, data)

    monkeypatch.setattr(folder, "fsync_write", slow_write)
    run.save_checkpoint({"step": 2}, 2, background=True)  # returns while the writer thread is busy
    assert started.wait(10)
    assert [p.name for p in run.checkpoints.glob("*.pt")] == ["ckpt-0000000001.pt"]
    release.set()
    assert run.load_latest_checkpoint()["step"] == 2  # reads wait for the write
    for step in (3, 4):
        run.save_checkpoint({"step": step}, step, background=True)
    assert [p.name for p in run.list_checkpoints()] == ["ckpt-0000000004.pt", "ckpt-0000000003.pt"]


def _disk_full(path, data):
    raise OSError(28, "No space left on device")


def test_a_failed_background_write_is_raised_on_the_training_thread_and_loses_nothing(tmp_path, monkeypatch):
    run = RunDir.create(str(tmp_path / "r"), "search", "x")
    run.save_checkpoint({"step": 1}, 1)
    monkeypatch.setattr(folder, "fsync_write", _disk_full)
    run.save_checkpoint({"step": 2}, 2, background=True)
    with pytest.raises(NaoWsError, match=f"No space left on device.*--resume {run.path}"):
        run.wait()
    run.wait()  # raised once
    monkeypatch.undo()
    assert run.load_latest_checkpoint()["step"] == 1
    assert not list(run.checkpoints.glob("*.tmp")) and len(run.list_checkpoints()) == 1

    monkeypatch.setattr(folder, "fsync_write", _disk_full)
    run.save_checkpoint({"step": 3}, 3, background=True)
    run._writer.join()
    monkeypatch.undo()
    with pytest.raises(NaoWsError, match="No space"):  # the next log line is the first to hear of it
        run.append_jsonl("metrics.jsonl", {"epoch": 3})
    assert run.read_jsonl("metrics.jsonl") == []


def test_many_records_are_one_write_and_one_fsync(tmp_path, monkeypatch):
    run = RunDir.create(str(tmp_path / "r"), "search", "x")
    calls = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or fsync(fd))
    run.append_jsonl("pool.jsonl", *({"i": i, "score": float("nan") if i == 3 else i} for i in range(1000)))
    assert len(calls) == 1
    records = run.read_jsonl("pool.jsonl")
    assert len(records) == 1000 and records[3]["score"] is None and records[999]["i"] == 999
    run.save_checkpoint({}, 1, logs=("pool.jsonl",))
    assert run.load_latest_checkpoint()["logs"]["pool.jsonl"] == records


@pytest.mark.parametrize("task", ["cifar10-sample", "ptb"])
def test_final_trainings_write_their_checkpoints_off_the_training_thread(task, tmp_path, monkeypatch, cli, data):
    """`nao-ws train` hands every checkpoint to the writer thread, and the last one is on disk, checked,
    before the command returns: a two-epoch smoke training of each kind of network."""
    argv = ["train", "--task", task, "--preset", "smoke", "--epochs", "2", "--no-progress", "--output", tmp_path / "r"]
    argv += ["--batch-size", "100"] if task != "ptb" else ["--data-dir", data("ptb-tiny"), "--emb-size", "12",
                                                            "--batch-size", "128", "--bptt", "20"]
    threads = []
    write = RunDir._write_checkpoint
    monkeypatch.setattr(RunDir, "_write_checkpoint",
                        lambda self, *a: threads.append(threading.current_thread().name) or write(self, *a))
    code, _, err = cli(argv)
    assert code == 0, err
    run = RunDir(tmp_path / "r")
    latest = run.load_latest_checkpoint()
    assert len(threads) >= 3 and set(threads) == {"checkpoint-writer"}
    assert latest["trainer"]["epoch"] == 2
    assert all(checkpoint_problem(p) is None for p in run.list_checkpoints())
