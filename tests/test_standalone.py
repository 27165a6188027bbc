"""Standalone training as a score source (Algorithm 1): smoke runs on both executors, retries of killed workers,
a killed and resumed driver that trains no finished candidate again, and one-line errors for wrong settings.

Most tests inject a stand-in candidate function (a pseudo-score from the architecture's text) so they
exercise the loop, the controller and the executors in seconds; the smoke tests train real candidates on
the bundled CIFAR-10 sample. Ray starts once for the module (2 CPUs, no dashboard).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from nao_ws.config.options import build_config, config_to_dict
from nao_ws.errors import NaoWsError
from nao_ws.runs import RunDir
from nao_ws.search import driver, options
from nao_ws.search.sources import standalone
from nao_ws.search.sources.executors import cpu_cores, make_executor
from supernet.spaces import parse_arch


# -- stand-in candidate functions (module level: worker processes and Ray workers import them) --------------

def pseudo_result(text: str) -> dict:
    score = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 16**8
    return {"valid_acc": score, "valid_loss": 1.0 - score, "params": 0}


def _log_attempt(log: str, text: str) -> None:
    with open(log, "a") as fh:  # one short O_APPEND write per attempt: safe across processes
        fh.write(text + "\n")


def counting_candidate(c, data, device, log: str) -> dict:
    """Records every training attempt, returns a pseudo-score."""
    _log_attempt(log, c.text)
    return pseudo_result(c.text)


def worker_killing_candidate(c, data, device, log: str, marker: str) -> dict:
    """The first attempt to create ``marker`` kills its own worker process in the middle of training."""
    _log_attempt(log, c.text)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return pseudo_result(c.text)
    os.kill(os.getpid(), signal.SIGKILL)


def always_failing_candidate(c, data, device, log: str) -> dict:
    _log_attempt(log, c.text)
    raise RuntimeError("out of cheese")


# -- helpers ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this file
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


def smoke_config(**overrides) -> options.StandaloneSearch:
    _, presets, base = options.config_for("cifar10-sample", "cnn", None)
    return build_config(options.StandaloneSearch, base, {"task": "cifar10-sample"}, presets["smoke"], overrides,
                        where=("defaults", "test", "preset smoke", "test"))


def new_run(path: Path, cfg) -> RunDir:
    run = RunDir.create(str(path), "search", cfg.task)
    run.write_config(config_to_dict(cfg))
    return run


def search(path: Path, cfg, candidate_fn=standalone.train_candidate, resume=False) -> dict:
    run = RunDir.open(path) if resume else new_run(path, cfg)
    source = standalone.StandaloneSource(cfg, candidate_fn=candidate_fn)
    return driver.run(cfg, run, resume=resume, progress=False, source=source)


def results(path: Path) -> dict:
    """text -> (round, failed?, score) of every finished candidate."""
    return {r["arch"]: (r["round"], "failed" in r, r["score"]) for r in RunDir(path).read_jsonl("pool.jsonl")}


def attempts(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# -- smoke runs: real candidates on the bundled sample ---------------------------------------------------------

def test_smoke_on_ray(tmp_path, ray_instance):
    """Real candidates trained by Ray tasks (the local executor's run is in the search matrix)."""
    cfg = smoke_config(executor="ray")
    out = search(tmp_path / "run", cfg)
    recs = RunDir(tmp_path / "run").read_jsonl("pool.jsonl")
    assert len(recs) == cfg.pool_size + cfg.new_per_round and not any("failed" in r for r in recs)
    assert all(0.0 <= r["valid_acc"] <= 1.0 and r["params"] > 0 for r in recs)
    assert out["score"] == max(r["score"] for r in recs)
    assert parse_arch(json.dumps(out)).space == "cnn"  # the best.json record parses as an architecture


# -- failures: killed workers, failing candidates --------------------------------------------------------------

def test_ray_worker_killed_mid_candidate_is_retried(tmp_path, ray_instance):
    cfg = smoke_config(executor="ray")
    log, marker = tmp_path / "attempts", tmp_path / "killed"
    search(tmp_path / "ray", cfg, functools.partial(worker_killing_candidate, log=str(log), marker=str(marker)))
    assert marker.exists()
    got = results(tmp_path / "ray")
    assert len(got) == cfg.pool_size + cfg.new_per_round and not any(failed for _, failed, _ in got.values())
    counts = {t: attempts(log).count(t) for t in got}
    assert sorted(counts.values()) == [1] * (len(got) - 1) + [2]  # only the killed candidate ran twice
    # and scheduling does not matter: the same search run locally, one candidate after another
    search(tmp_path / "local", dataclasses.replace(cfg, executor="local"),
           functools.partial(counting_candidate, log=str(tmp_path / "local-attempts")))
    assert results(tmp_path / "local") == got


@pytest.mark.skipif(cpu_cores() < 2, reason="two worker processes need two CPU cores")
def test_local_worker_processes_retry_a_killed_worker(tmp_path):
    log, marker = tmp_path / "attempts", tmp_path / "killed"
    jobs = [standalone.Candidate(f"arch {i}", None, i) for i in range(4)]
    executor = make_executor("local", 2, None, 1, "cpu", data=None)
    try:
        fn = functools.partial(worker_killing_candidate, log=str(log), marker=str(marker))
        done = {job.text: outcome for job, outcome in executor.map(fn, jobs)}
    finally:
        executor.close()
    assert sorted(done) == [j.text for j in jobs] and all(o.ok for o in done.values())
    assert marker.exists() and len(attempts(log)) >= len(jobs) + 1


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_failing_candidate_is_retried_then_recorded_as_failed(tmp_path, kind, request):
    if kind == "ray":
        request.getfixturevalue("ray_instance")
    log = tmp_path / "attempts"
    jobs = [standalone.Candidate("arch", None, 0)]
    executor = make_executor(kind, 1, None, 2, "cpu", data=None)
    try:
        [(job, outcome)] = list(executor.map(functools.partial(always_failing_candidate, log=str(log)), jobs))
    finally:
        executor.close()
    assert not outcome.ok and outcome.error == "RuntimeError: out of cheese"
    assert attempts(log) == ["arch"] * 3  # the first attempt and max_retries = 2 retries


def test_every_candidate_failing_is_a_one_line_error(tmp_path):
    with pytest.raises(NaoWsError, match="every candidate failed .*out of cheese"):
        search(tmp_path / "run", smoke_config(max_retries=0),
               functools.partial(always_failing_candidate, log=str(tmp_path / "attempts")))
    recs = RunDir(tmp_path / "run").read_jsonl("pool.jsonl")
    assert len(recs) == smoke_config().pool_size and all(r["score"] is None and r["failed"] for r in recs)


def test_failed_candidates_are_recorded_and_left_out_of_the_history(tmp_path):
    """A candidate that fails every attempt is a record with its error, never a score the strategy learns."""
    fails = set()

    def half_failing(c, data, device):
        if int(hashlib.sha256(c.text.encode()).hexdigest(), 16) % 2:
            fails.add(c.text)
            raise RuntimeError("out of cheese")
        return pseudo_result(c.text)

    out = search(tmp_path / "run", smoke_config(max_retries=0), half_failing)
    recs = RunDir(tmp_path / "run").read_jsonl("pool.jsonl")
    assert fails and {r["arch"] for r in recs if "failed" in r} == fails
    assert out["text"] not in fails and out["score"] == max(r["score"] for r in recs if r["score"] is not None)


# -- the driver stopped and resumed ---------------------------------------------------------------------------

class Died(BaseException):
    """The driver's death in the middle of a round (SIGKILL itself: the search matrix in test_search.py)."""


def dying_candidate(c, data, device, log: str, die_at: int) -> dict:
    _log_attempt(log, c.text)
    if len(Path(log).read_text().splitlines()) == die_at:
        raise Died
    return pseudo_result(c.text)


@pytest.mark.parametrize("die_at", [3, 8])  # in round 0, and in round 1 (after a controller fit)
def test_a_resumed_search_trains_no_finished_candidate_again(tmp_path, die_at):
    cfg = smoke_config()
    path, log = tmp_path / "stopped", tmp_path / "attempts"
    with pytest.raises(Died):
        search(path, cfg, functools.partial(dying_candidate, log=str(log), die_at=die_at))
    finished = set(results(path))
    assert len(finished) == die_at - 1

    resumed_log = tmp_path / "resumed-attempts"
    out = search(path, cfg, functools.partial(counting_candidate, log=str(resumed_log)), resume=True)
    assert not finished & set(attempts(resumed_log))  # no finished candidate trained again
    assert len(attempts(resumed_log)) == cfg.pool_size + cfg.new_per_round - len(finished)

    ref_path = tmp_path / "uninterrupted"
    ref = search(ref_path, cfg, functools.partial(counting_candidate, log=str(tmp_path / "ref-attempts")))
    assert results(path) == results(ref_path) and out == ref
    assert (path / "best.json").read_text() == (ref_path / "best.json").read_text()


# -- settings errors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, workers, address, message", [
    ("slurm", 1, None, "--executor slurm is unknown"),
    ("local", 1, "auto", "--ray-address needs --executor ray"),
    ("local", 0, None, "--workers must be >= 1"),
    ("local", cpu_cores() + 1, None, "only .* CPU core"),
    ("ray", 2, None, "--workers is for --executor local"),
])
def test_wrong_executor_settings_are_one_line_errors(kind, workers, address, message):
    with pytest.raises(NaoWsError, match=message) as e:
        make_executor(kind, workers, address, 2, "cpu", data=None)
    assert "\n" not in str(e.value)


def test_more_workers_than_gpus_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(NaoWsError, match="--workers 3 but only 2 GPU"):
        make_executor("local", 3, None, 2, "cuda", data=None)


@pytest.mark.parametrize("address, message", [("127.0.0.1:1", "cannot reach a Ray head"),
                                              ("no-port", "expected auto or HOST:PORT")])
def test_bad_ray_address_is_a_one_line_error(address, message):
    pytest.importorskip("ray")
    with pytest.raises(NaoWsError, match=message) as e:
        make_executor("ray", 1, address, 2, "cpu", data=None)
    assert "\n" not in str(e.value)


def test_ray_not_installed_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(NaoWsError, match=r"needs Ray: pip install -e '\.\[ray\]'"):
        make_executor("ray", 1, None, 2, "cpu", data=None)


@pytest.mark.parametrize("overrides, message", [
    ({"task": "ptb"}, "runs on cifar10 or cifar10-sample"),
    ({"space": "cnn-ws"}, "not --space cnn-ws"),
    ({"seeds": 7}, "--seeds 7 exceeds --pool-size 6"),
    ({"rounds": 0}, "must be >= 1"),
])
def test_impossible_configs_are_one_line_errors(tmp_path, overrides, message):
    with pytest.raises(NaoWsError, match=message):
        standalone.check_config(smoke_config(**overrides))


def test_candidate_seed_depends_on_run_seed_and_architecture_only():
    a, b = "0 1 0 1", "0 1 0 2"
    assert standalone.candidate_seed(0, a) == standalone.candidate_seed(0, a)
    assert len({standalone.candidate_seed(0, a), standalone.candidate_seed(1, a), standalone.candidate_seed(0, b)}) == 3
