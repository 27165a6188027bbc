"""The NAO-WS search end to end: smoke runs of both tasks and strategies, run folder contents, TensorBoard
events, exact kill-and-resume, checkpoint fallback, divergence rollback and option errors."""
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nao_ws import search as search_mod
from nao_ws.cli import main
from nao_ws.search_tasks import sgdr_lr
from supernet.spaces import get_space, parse_arch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PTB_TINY = str(SHARED / "ptb-tiny")
REPO = Path(__file__).resolve().parents[1]
# Smaller than the smoke preset where it does not change the code path: the suite runs in CI.
FAST_CNN = ["search", "--task", "cifar10", "--preset", "smoke", "--epochs", "2", "--eval-every", "1", "--pool-size", "10",
            "--new-per-iter", "4", "--random-per-iter", "1", "--seeds", "4", "--rerank-top", "1",
            "--controller-epochs", "10"]
FAST_PTB = ["search", "--task", "ptb", "--data-dir", PTB_TINY, "--preset", "smoke", "--epochs", "2", "--eval-every", "1",
            "--pool-size", "10", "--new-per-iter", "4", "--random-per-iter", "1", "--seeds", "4",
            "--rerank-top", "1", "--controller-epochs", "10"]


def cli(args, capsys=None):
    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def strip_timing(obj):
    """Remove wall-clock fields, the only values two equal runs may differ in."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if not k.startswith("seconds")}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj


FAST_NB201 = ["search", "--task", "cifar10", "--space", "nb201", "--preset", "smoke", "--pool-size", "6",
              "--new-per-iter", "3", "--random-per-iter", "1", "--seeds", "3"]
SMOKE = {"cifar10": (FAST_CNN, "cnn-ws"), "ptb": (FAST_PTB, "rnn"), "nb201": (FAST_NB201, "nb201")}
# The cifar10 NAO run doubles as the uninterrupted reference of the kill-and-resume test, hence these flags.
REFERENCE_FLAGS = ["--deterministic", "--seed", "3"]


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """One smoke search per task and strategy, run lazily and shared by the tests that read its run folder:
    ``smoke_runs(task, strategy)`` -> (run folder, the JSON line it printed last, seconds it took)."""
    done = {}

    def get(task, strategy):
        if (task, strategy) not in done:
            out_dir = tmp_path_factory.mktemp(f"{task}-{strategy}") / "run"
            args, _ = SMOKE[task]
            start, stdout, code = time.time(), io.StringIO(), 0
            try:
                with contextlib.redirect_stdout(stdout):
                    main(args + REFERENCE_FLAGS + ["--strategy", strategy, "--output", str(out_dir), "--no-progress"])
            except SystemExit as e:
                code = e.code
            assert code == 0, f"smoke search {task}/{strategy} exited with {code}"
            done[task, strategy] = (out_dir, json.loads(stdout.getvalue().strip().splitlines()[-1]), time.time() - start)
        return done[task, strategy]

    return get


@pytest.mark.parametrize("task", ["cifar10", "ptb"])
@pytest.mark.parametrize("strategy", ["nao", "random"])
def test_smoke_search_writes_a_complete_run_folder(task, strategy, smoke_runs):
    out_dir, result, _ = smoke_runs(task, strategy)
    space = SMOKE[task][1]
    for name in ("config.json", "pool.jsonl", "best.json", "metrics.jsonl", "log.txt"):
        assert (out_dir / name).is_file(), name
    assert list((out_dir / "checkpoints").glob("ckpt-*.pt")) and list((out_dir / "tb").iterdir())
    cfg = json.loads((out_dir / "config.json").read_text())
    assert cfg["strategy"] == strategy and cfg["space"] == space

    pool = read_jsonl(out_dir / "pool.jsonl")
    sp = get_space(space)
    by_iter = {}
    for r in pool:
        by_iter.setdefault(r["iteration"], []).append(r)
        a = parse_arch(r["arch"], space)
        assert r["canonical"] == sp.format(sp.canonical(a)) and r["origin"] in ("seed", "nao", "random")
        assert np.isfinite(r["score"])
    assert sorted(by_iter) == [0, 1]
    for recs in by_iter.values():  # the pool is always full and unique by canonical form
        assert len(recs) == 10 and len({r["canonical"] for r in recs}) == 10
    origins = {r["origin"] for r in by_iter[1]}
    # same budget for both strategies: 4 new + 1 random per update; only NAO decodes architectures
    assert ("nao" in origins) == (strategy == "nao")
    assert sum(r["origin"] != "seed" for r in by_iter[1]) == 5

    best = json.loads((out_dir / "best.json").read_text())
    assert best["text"] == result["best"] and best["rerank"]["arch"] == best["text"]
    assert parse_arch(str(out_dir / "best.json")) == parse_arch(best["text"], space)

    metrics = read_jsonl(out_dir / "metrics.jsonl")
    phases = [m["phase"] for m in metrics]
    assert phases.count("train") == 2 and phases.count("score") == 2 and phases.count("rerank") == 1
    assert ("controller" in phases) == (strategy == "nao")


def test_best_json_feeds_train(smoke_runs, capsys):
    out_dir = smoke_runs("cifar10", "nao")[0]
    code, out, err = cli(["train", "--task", "cifar10-sample", "--arch", str(out_dir / "best.json"), "--preset",
                          "smoke", "--dry-run", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["params"] > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("supernet/loss", "supernet/lr", "pool/mean", "pool/max", "pool/top10_mean",
                "best/inherited_score", "controller/train_pairwise_accuracy", "controller/train_kendall_tau",
                "controller/train_hamming", "generate/fraction_new", "generate/eta_mean"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("pool/max")] == [1, 2]
    assert "best/cells" in tags["images"]


def test_best_json_of_an_rnn_search_keeps_its_cell_output(smoke_runs, capsys):
    """The searched cell trains as its search scored it; a cell given as text gets the final recipe's output."""
    best = smoke_runs("ptb", "random")[0] / "best.json"
    dry = ["train", "--task", "ptb", "--data-dir", PTB_TINY, "--preset", "smoke", "--dry-run", "--json"]
    for arch, flags, want in ((str(best), [], "loose"), (str(best), ["--cell-output", "all"], "all"),
                              (json.loads(best.read_text())["text"], [], "all")):
        code, out, err = cli(dry + ["--arch", arch] + flags, capsys)
        assert code == 0, err
        assert json.loads(out)["cell_output"] == want


def _spawn(args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nao_ws.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> list:
    try:
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    except (OSError, json.JSONDecodeError):
        return []


def _kill_when(proc, ready, timeout=300):
    """SIGKILL ``proc`` as soon as ``ready()`` holds; False if it finished first."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the search did not reach the kill point in time")


def test_killed_and_resumed_search_equals_uninterrupted(tmp_path, smoke_runs, tb_scalars):
    """Kill during scoring, during controller training and at a random moment; resume each time. The
    uninterrupted reference is the shared cifar10 NAO smoke run (same flags, run in-process)."""
    ref, _, duration = smoke_runs("cifar10", "nao")
    args = FAST_CNN + REFERENCE_FLAGS + ["--strategy", "nao", "--no-progress"]
    run = tmp_path / "killed"
    metrics = run / "metrics.jsonl"
    kill_points = [
        lambda: any(m["phase"] == "train" for m in _lines(metrics)),  # epoch 1 trained: scoring runs next
        lambda: any(m["phase"] == "score" for m in _lines(metrics)),  # scored: controller training runs next
    ]
    rng = np.random.default_rng(0)
    p = _spawn(args + ["--output", str(run)])
    kills = 0
    for k in range(3):
        if k < len(kill_points):
            killed = _kill_when(p, kill_points[k])
        else:  # at a random moment of what remains
            t_kill = time.time() + rng.uniform(0.1, 0.6) * duration
            killed = _kill_when(p, lambda: time.time() >= t_kill)
        kills += killed
        if not killed:
            break
        p = _spawn(["search", "--resume", str(run), "--no-progress"])
    assert p.wait() == 0, p.stderr.read()
    assert kills >= 2
    assert "resumed" in (run / "log.txt").read_text()

    assert read_jsonl(run / "pool.jsonl") == read_jsonl(ref / "pool.jsonl")
    assert strip_timing(read_jsonl(run / "metrics.jsonl")) == strip_timing(read_jsonl(ref / "metrics.jsonl"))
    assert strip_timing(json.loads((run / "best.json").read_text())) == \
        strip_timing(json.loads((ref / "best.json").read_text()))
    curves = [{k: v for k, v in tb_scalars(p).items() if "seconds" not in k} for p in (run, ref)]
    assert curves[0] == curves[1]


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, smoke_runs, capsys):
    out_dir = tmp_path / "run"
    shutil.copytree(smoke_runs("ptb", "random")[0], out_dir)
    best = json.loads((out_dir / "best.json").read_text())
    ckpts = sorted((out_dir / "checkpoints").glob("ckpt-*.pt"))
    data = ckpts[-1].read_bytes()
    ckpts[-1].write_bytes(data[: len(data) // 2])  # a write cut short
    with pytest.warns(UserWarning, match="fails its checksum"):
        code, out, err = cli(["search", "--resume", str(out_dir), "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads((out_dir / "best.json").read_text())["text"] == best["text"]
    assert "falling back" in (out_dir / "log.txt").read_text()


def test_resume_drops_log_lines_written_after_the_checkpoint(tmp_path, monkeypatch, capsys, tb_scalars):
    """Die right after the first scoring wrote its pool lines and events, before the checkpoint that follows:
    the checkpoint resumed from predates pool.jsonl, so all of it must go, or iteration 0 is logged twice;
    TensorBoard shows epoch 1 once, its supernet training (before the checkpoint) included."""
    class Died(Exception):
        pass

    real_score, died = search_mod.PHASES["score"], []

    def score_then_die(self):
        real_score(self)
        if not died:
            died.append(True)
            raise Died

    monkeypatch.setitem(search_mod.PHASES, "score", score_then_die)
    out_dir = tmp_path / "run"
    with pytest.raises(Died):
        main(FAST_PTB + ["--strategy", "random", "--epochs", "1", "--rerank-top", "0", "--output", str(out_dir),
                         "--no-progress"])
    assert len(read_jsonl(out_dir / "pool.jsonl")) == 10
    code, _, err = cli(["search", "--resume", str(out_dir), "--no-progress"], capsys)
    assert code == 0, err
    pool = read_jsonl(out_dir / "pool.jsonl")
    assert len(pool) == 10 and {r["iteration"] for r in pool} == {0}
    curves = tb_scalars(out_dir)
    assert [step for step, _ in curves["pool/max"]] == [1] and [step for step, _ in curves["supernet/loss"]] == [1]


def test_divergence_rolls_back_with_a_lower_lr(tmp_path, monkeypatch, capsys, tb_scalars):
    """A NaN burst in epoch 2 rolls back to the checkpoint before epoch 1 (none is taken in between) and
    trains both epochs again at half the lr; logs and TensorBoard show each epoch once."""
    from supernet import rnn

    out_dir = tmp_path / "run"
    real_step, nan_steps = rnn.train_step, []

    def flaky_step(model, optimizer, window, hidden, arch=None, **kw):
        # once epoch 1 is logged, more than max_nan_steps (20) non-finite losses in a row, once
        if (out_dir / "metrics.jsonl").exists() and len(nan_steps) < 25:
            nan_steps.append(1)
            return rnn.StepResult(float("nan"), False, hidden=hidden.detach() * 0)
        return real_step(model, optimizer, window, hidden, arch, **kw)

    monkeypatch.setattr(rnn, "train_step", flaky_step)
    code, out, err = cli(FAST_PTB + ["--rerank-top", "0", "--eval-every", "2", "--checkpoint-every", "2",
                                     "--output", str(out_dir), "--no-progress"], capsys)
    assert code == 0, err
    assert "rolled back to epoch 0" in (out_dir / "log.txt").read_text()
    lrs = [m["lr"] for m in read_jsonl(out_dir / "metrics.jsonl") if m["phase"] == "train"]
    assert len(lrs) == 2 and lrs[0] == pytest.approx(0.25 * 0.5)  # epoch 1 was trained again at half the lr
    assert [(step, pytest.approx(lr)) for step, lr in tb_scalars(out_dir)["supernet/lr"]] == [(1, lrs[0]), (2, lrs[1])]


@pytest.mark.parametrize("args,needle", [
    (["--task", "ptb", "--space", "cnn-ws"], "searches the rnn space"),
    (["--task", "cifar10", "--space", "rnn"], "searches the cnn-ws"),
    (["--task", "cifar10", "--seeds", "50", "--pool-size", "20"], "exceeds --pool-size"),
    (["--task", "cifar10", "--eval-every", "9", "--epochs", "4"], "--eval-every 9"),
    (["--task", "cifar10", "--strategy", "evolution"], "--strategy evolution"),
    (["--task", "cifar10", "--controller-data", "latest"], "--controller-data latest is unknown"),
    (["--task", "ptb", "--cell-output", "last"], "--cell-output last is unknown"),
    (["--task", "cifar10", "--emb-size", "8"], "--emb-size does not apply to --task cifar10"),
    (["--task", "cifar10", "--preset", "huge"], "unknown preset 'huge'"),
    (["--resume", "/nonexistent/run"], "not a run folder"),
    (["--task", "ptb", "--space", "cnn"], "runs on cifar10"),
])
def test_bad_options_are_one_line_errors(args, needle, capsys, tmp_path):
    code, _, err = cli(["search", *args, "--output", str(tmp_path / "x")], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("how", ["pool", "all", "rescore"])
def test_controller_data(how):
    """pool: the pool's current scores; all: every architecture scored, each with its latest score; rescore:
    every architecture, those outside the pool scored again by the task (the pool was just scored)."""
    space = get_space("cnn-ws")
    rng = np.random.default_rng(0)
    texts = [space.format(space.sample(rng)) for _ in range(6)]
    scored = []

    class Task:
        def score(self, archs, monitor):
            scored.append(archs)
            return [{"score": 100.0 + i} for i in range(len(archs))]

    search = search_mod.Search.__new__(search_mod.Search)  # the phase's parts only: no supernet, no data
    search.cfg, search.task, search.monitor = SimpleNamespace(controller_data=how, space="cnn-ws"), Task(), None
    search.state = search_mod.State(pool=texts[2:], scores={t: {"score": float(i)} for i, t in enumerate(texts)})
    got = search.controller_data()
    want = {"pool": (texts[2:], [2.0, 3.0, 4.0, 5.0]), "all": (texts, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
            "rescore": (texts, [100.0, 101.0, 2.0, 3.0, 4.0, 5.0])}[how]
    assert got == want
    assert scored == ([[parse_arch(t, "cnn-ws") for t in texts[:2]]] if how == "rescore" else [])


@pytest.mark.parametrize("holdout", [0.0, 0.25])
def test_controller_metrics_cost_no_training_data(holdout):
    """Before a fit, the last fit's metrics on the architectures new in the pool (never fitted on); after it,
    the fit on its training set. Held-out metrics only with a holdout."""
    from nao_ws.strategies import ControllerDriver

    space = get_space("cnn-ws")
    rng = np.random.default_rng(0)
    texts = [space.format(space.sample(rng)) for _ in range(12)]
    scores = {t: {"score": float(rng.random())} for t in texts}
    driver = ControllerDriver.for_space(space, torch.device("cpu"), train={"epochs": 3, "holdout": holdout})
    search = search_mod.Search.__new__(search_mod.Search)  # the phase's parts only: no supernet, no data
    search.cfg = SimpleNamespace(strategy="nao", controller_data="pool", space="cnn-ws", seed=0)
    search.controller, search.monitor, records = driver, None, []
    search.log = records.append
    archs = [parse_arch(t, "cnn-ws") for t in texts]
    fresh = texts[8:]
    search.state = search_mod.State(pool=texts, scores=scores, fresh=fresh, iteration=0)
    search.fit_controller()  # iteration 0: no earlier fit to measure
    assert not any(k.startswith("new_") for k in records[0])
    want_new = driver.evaluate([parse_arch(t, "cnn-ws") for t in fresh], [scores[t]["score"] for t in fresh])
    search.state.phase, search.state.iteration = "controller", 1
    search.fit_controller()
    got = records[1]
    assert got["n_new"] == 4 and {k: got[f"new_{k}"] for k in want_new} == want_new
    assert {k: got[f"train_{k}"] for k in want_new} == driver.evaluate(archs, [scores[t]["score"] for t in texts])
    assert got["train_kendall_tau"] != got["new_kendall_tau"]
    assert ("kendall_tau" in got) == (holdout > 0) and got["n_holdout"] == int(holdout * 12)


def test_resume_rejects_new_options(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"task": "ptb"}))
    code, _, err = cli(["search", "--resume", str(tmp_path), "--epochs", "5"], capsys)
    assert code == 2 and "drop the other options (--epochs)" in err


def test_sgdr_restarts():
    assert sgdr_lr(0, 0.05, 5e-4, 10, 2) == pytest.approx(0.05)
    assert sgdr_lr(5, 0.05, 5e-4, 10, 2) == pytest.approx((0.05 + 5e-4) / 2)
    assert sgdr_lr(10, 0.05, 5e-4, 10, 2) == pytest.approx(0.05)  # restart after T0 = 10
    assert sgdr_lr(29, 0.05, 5e-4, 10, 2) < sgdr_lr(20, 0.05, 5e-4, 10, 2)  # second period lasts 20 epochs
    assert sgdr_lr(30, 0.05, 5e-4, 10, 2) == pytest.approx(0.05)


def test_rerank_uses_ref_pts_recipe(monkeypatch):
    """SPEC 3.1, end of search: ref-PT's re-ranking trains N = 3, C = 20 for 10 epochs in batches of 64, cosine
    0.025 -> 0.001, aux head 0.4, head keep 0.6, weight decay 3e-4, no cutout and (in effect) no drop-path."""
    from nao_ws import search_tasks, train_cnn

    got = {}

    def fit_candidate(arch, data, recipe, device, seed, monitor=None):
        got["recipe"] = recipe
        return {"valid_acc": 0.5}

    monkeypatch.setattr(train_cnn, "fit_candidate", fit_candidate)
    task = search_tasks.CnnSearch.__new__(search_tasks.CnnSearch)  # no supernet, no data
    task.cfg, task.data, task.device = search_mod.CnnSearchConfig(task="cifar10"), None, "cpu"
    assert task.rerank(get_space("cnn-ws").sample(np.random.default_rng(0)), 0, None)["score"] == 0.5
    r = got["recipe"]
    assert (r.layers, r.channels, r.epochs, r.batch_size, r.lr, r.lr_min, r.momentum, r.decay(), r.grad_clip,
            r.aux_weight, r.head_keep, r.cutout, r.drop_path_keep) == \
        (3, 20, 10, 64, 0.025, 0.001, 0.9, 3e-4, 5.0, 0.4, 0.6, 0, 1.0)


def test_paper_presets_follow_the_spec():
    cnn = search_mod.CnnSearchConfig(task="cifar10")
    assert (cnn.layers, cnn.channels, cnn.batch_size, cnn.epochs, cnn.pool_size, cnn.new_per_iter,
            cnn.random_per_iter, cnn.eval_every) == (2, 20, 160, 150, 1000, 500, 50, 30)
    rnn_cfg = search_mod.RnnSearchConfig(task="ptb", **search_mod.RNN_PRESETS["paper"])
    assert (rnn_cfg.emb_size, rnn_cfg.batch_size, rnn_cfg.bptt, rnn_cfg.lr, rnn_cfg.epochs, rnn_cfg.eval_every,
            rnn_cfg.new_per_iter) == (300, 256, 35, 0.25, 1000, 200, 300)


# -- nao-ws score ------------------------------------------------------------------------------------------------

def _folder_bytes(path: Path) -> dict:
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _score_lines(run, pool, tmp_path, capsys):
    """``nao-ws score`` on ``pool``'s architectures (with a comment and a blank line) -> its JSON records."""
    archs = tmp_path / "archs.txt"
    archs.write_text("# the pool\n\n" + "".join(r["arch"] + "\n" for r in pool))
    before = _folder_bytes(run)
    code, out, err = cli(["score", "--run", str(run), "--archs", str(archs), "--output", str(tmp_path / "scores.jsonl"),
                          "--no-progress"], capsys)
    assert code == 0, err
    assert _folder_bytes(run) == before  # the run folder is only read
    assert (tmp_path / "scores.jsonl").read_text().splitlines() == out.splitlines()
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("task, strategy", [("cifar10", "nao"), ("ptb", "random"), ("nb201", "random")])
def test_score_equals_the_pool_scores_of_the_same_supernet(task, strategy, smoke_runs, tmp_path, capsys):
    """A finished run: its last checkpoint's supernet is the one that scored the last pool."""
    run = smoke_runs(task, strategy)[0]
    last = [r for r in read_jsonl(run / "pool.jsonl") if r["epoch"] == 2]
    got = _score_lines(run, last, tmp_path, capsys)
    assert [r["line"] for r in got] == list(range(3, 3 + len(last)))
    for r, want in zip(got, last):
        assert (r["arch"], r["canonical"], r["epoch"]) == (want["arch"], want["canonical"], 2)
        assert r["score"] == pytest.approx(want["score"], rel=1e-6, abs=1e-9)
        assert r["valid_loss"] == pytest.approx(want["valid_loss"], rel=1e-6)


def test_score_on_a_killed_run(tmp_path, capsys):
    """Killed after its first controller fit: the newest valid checkpoint holds the supernet of epoch 1, which
    scored the first pool."""
    run = tmp_path / "killed"
    p = _spawn(FAST_CNN + ["--strategy", "nao", "--epochs", "3", "--output", str(run), "--no-progress"])
    assert _kill_when(p, lambda: any(m["phase"] == "controller" for m in _lines(run / "metrics.jsonl")))
    first = [r for r in read_jsonl(run / "pool.jsonl") if r["epoch"] == 1]
    got = _score_lines(run, first, tmp_path, capsys)
    assert len(got) == len(first) == 10 and {r["epoch"] for r in got} == {1}
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in first], rel=1e-6)


def test_score_errors_are_one_line(smoke_runs, tmp_path, capsys):
    run = smoke_runs("cifar10", "nao")[0]
    cnn_arch = read_jsonl(run / "pool.jsonl")[0]["arch"]
    rnn_arch = get_space("rnn").format(get_space("rnn").sample(np.random.default_rng(0)))
    no_ckpt = tmp_path / "fresh"
    no_ckpt.mkdir()
    (no_ckpt / "config.json").write_text((run / "config.json").read_text())

    def error(run_dir, lines, *needles):
        archs = tmp_path / "archs.txt"
        if lines is not None:
            archs.write_text("".join(line + "\n" for line in lines))
        code, out, err = cli(["score", "--run", str(run_dir), "--archs", str(archs), "--no-progress"], capsys)
        assert code == 2 and not out and len(err.strip().splitlines()) == 1, err
        for needle in needles:
            assert str(needle) in err, err
        archs.unlink(missing_ok=True)

    error(run, [cnn_arch, "# an rnn cell", rnn_arch], "line 3 is an architecture of space rnn", "searched the cnn-ws space")
    error(run, [cnn_arch, "0 1 2 3"], "line 2", "got 4 integers; expected 40")
    error(run, [cnn_arch.replace("0", "x", 1)], "line 1", "'x' is not an integer")
    error(run, ["cells.json"], "line 1", "not an architecture's text form")
    error(run, ["# nothing", ""], "holds no architecture")
    error(run, None, "does not exist")
    error(tmp_path / "nowhere", [cnn_arch], "not a run folder")
    error(no_ckpt, [cnn_arch], "holds no checkpoint")
