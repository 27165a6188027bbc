"""Searches on a weight-sharing supernet: every strategy on the nb201 and cnn-ws supernets (the matrix's other
half is test_search.py), the PTB search, TensorBoard, resume after a death in any phase, checkpoint fallback,
divergence rollback, the re-ranking recipe, the presets, and ``nao-ws score``."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nao_ws.search import driver, options
from nao_ws.search.sources import supernets
from supernet.spaces import get_space, parse_arch

RUN_FILES = ("config.json", "pool.jsonl", "metrics.jsonl", "best.json", "log.txt")
KILLS = {("nb201", "random"): 2, ("nb201", "rea"): 5, ("nb201", "nao"): 4, ("nb201", "enas"): 3, ("nb201", "local"): 4,
         ("cnn-ws", "random"): 6, ("cnn-ws", "rea"): 3, ("cnn-ws", "nao"): 1, ("cnn-ws", "enas"): 4}
MATRIX = [(source, strategy) for source in ("nb201", "cnn-ws") for strategy in ("random", "rea", "nao", "enas")] + \
    [("nb201", "local")]


@pytest.fixture(scope="module")
def ptb(cli, data, tmp_path_factory):
    """A NAO smoke search on PTB (the excerpt), run once for the module: its run folder."""
    out = tmp_path_factory.mktemp("ptb") / "run"
    args = ["search", "--task", "ptb", "--data-dir", data("ptb-tiny"), "--preset", "smoke", "--epochs", "2",
            "--eval-every", "1", "--pool-size", "6", "--new-per-iter", "2", "--random-per-iter", "1", "--seeds", "3",
            "--rerank-top", "1", "--controller-epochs", "8", "--seed", "3", "--output", out, "--no-progress"]
    code, _, err = cli(args)
    assert code == 0, err
    return out


@pytest.mark.parametrize("source,strategy", MATRIX)
def test_every_strategy_writes_the_run_folder(source, strategy, matrix, jsonl):
    out = matrix.reference(source, strategy)
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert list((out / "checkpoints").glob("ckpt-*.pt")) and list((out / "tb").iterdir())
    space = get_space(source)
    pool = jsonl(out / "pool.jsonl")
    by_round = {}
    for r in pool:
        assert r["canonical"] == space.format(space.canonical(parse_arch(r["arch"], source)))
        assert r["origin"] in ("initial", "random", strategy) and np.isfinite(r["score"])
        by_round.setdefault(r["round"], []).append(r)
    assert sorted(by_round) == [0, 1]
    for recs in by_round.values():  # the whole pool each round, unique by canonical form
        assert len(recs) == 6 and len({r["canonical"] for r in recs}) == 6
    new = [r for r in by_round[1] if r["arch"] not in {x["arch"] for x in by_round[0]}]
    proposed = sum(r["origin"] == strategy for r in new)
    assert len(new) == 3 and proposed == {"random": 3, "nao": proposed or 1}.get(strategy, 2), new
    assert all(r["epoch"] == r["round"] + 1 for r in pool)
    best = json.loads((out / "best.json").read_text())
    assert best["source"] == "supernet" and best["rerank"]["arch"] == best["text"] == best["query"]["arch"]
    phases = [m["phase"] for m in jsonl(out / "metrics.jsonl")]
    assert phases == ["train", "score", "propose", "train", "score", "rerank"]


@pytest.mark.parametrize("source,strategy", MATRIX)
def test_killed_and_resumed_equals_uninterrupted(source, strategy, matrix, cli, jsonl, tb_scalars, tmp_path):
    """SIGKILLed right after the k-th log write (any phase: training, scoring, proposing, re-ranking) and
    resumed, the search ends as the uninterrupted one did: logs, best.json and TensorBoard curves."""
    ref = matrix.reference(source, strategy)
    run = tmp_path / "killed"
    proc = matrix.killed(source, strategy, KILLS[source, strategy], run)
    assert proc.returncode == -9, proc.stderr[-3000:]
    code, _, err = cli(["search", "--resume", run, "--no-progress"])
    assert code == 0, err
    for name in ("pool.jsonl", "metrics.jsonl"):
        assert jsonl.untimed(jsonl(run / name)) == jsonl.untimed(jsonl(ref / name)), name
    assert jsonl.untimed(json.loads((run / "best.json").read_text())) == \
        jsonl.untimed(json.loads((ref / "best.json").read_text()))
    curves = [{k: v for k, v in tb_scalars(p).items() if "seconds" not in k} for p in (run, ref)]
    assert curves[0] == curves[1]


def test_score_proxy_mixes_the_two_rankings_and_resumes(matrix, cli, capsys, jsonl, killed, tmp_path):
    """--score-proxy: each round's scores are the mean of the pool's ranking by inherited weights and by the
    proxy, over the pool's size; a cell's proxy value is the same in every round; ``nao-ws score`` on the last
    pool gives its scores; a search killed with SIGKILL and resumed ends as the uninterrupted one."""
    from scipy.stats import rankdata

    args = matrix.args("nb201", "random") + ["--score-proxy", "jacob_cov"]
    code, _, err = cli(args + ["--output", tmp_path / "ref"])
    assert code == 0, err
    pool = jsonl(tmp_path / "ref" / "pool.jsonl")
    values = {}
    for round_ in (0, 1):
        recs = [r for r in pool if r["round"] == round_]
        proxy = [-np.inf if r["jacob_cov"] is None else r["jacob_cov"] for r in recs]
        want = (rankdata([r["inherited_score"] for r in recs]) + rankdata(proxy)) / (2 * len(recs))
        assert [r["score"] for r in recs] == pytest.approx(want)
        assert all(values.setdefault(r["arch"], r["jacob_cov"]) == r["jacob_cov"] for r in recs)
    assert len(values) < len(pool)  # cells of the pool scored in both rounds
    got = _score_lines(tmp_path / "ref", recs, tmp_path, cli, capsys)
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in recs])
    proc = killed(args + ["--output", tmp_path / "killed"], 4)
    assert proc.returncode == -9, proc.stderr[-3000:]
    code, _, err = cli(["search", "--resume", tmp_path / "killed", "--no-progress"])
    assert code == 0, err
    for name in ("pool.jsonl", "metrics.jsonl"):
        assert jsonl.untimed(jsonl(tmp_path / "killed" / name)) == jsonl.untimed(jsonl(tmp_path / "ref" / name))


def test_tensorboard_and_best_json_of_a_nao_search(matrix, cli, capsys):
    out = matrix.reference("cnn-ws", "nao")
    code, stdout, err = cli(["train", "--task", "cifar10-sample", "--arch", out / "best.json", "--preset", "smoke",
                             "--dry-run", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["params"] > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("supernet/loss", "supernet/lr", "pool/mean", "pool/max", "pool/top10_mean", "best/score",
                "controller/train_pairwise_accuracy", "controller/train_kendall_tau", "controller/train_hamming",
                "generate/fraction_new", "generate/eta_mean"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("pool/max")] == [1, 2]  # supernet epochs
    assert "best/cells" in tags["images"]


@pytest.mark.parametrize("source", ["nb201", "cnn-ws", "ptb"])
def test_enas_alternates_supernet_and_policy_training(source, matrix, cli, jsonl, tb_scalars, tmp_path):
    """ENAS on a supernet: the shared weights train on the policy's samples, then the policy trains for its
    steps after every epoch; its figures reach metrics.jsonl and TensorBoard; every architecture it proposes
    is valid. On PTB (the matrix has the others), killed after its first policy training and resumed, the
    search ends as the uninterrupted one."""
    out = matrix.reference(source, "enas")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["sampling"] == "policy" and cfg["policy_steps"] == 2
    space = get_space(cfg["space"])
    trains = [m for m in jsonl(out / "metrics.jsonl") if m["phase"] == "train"]
    assert [m["policy"]["updates"] for m in trains] == [2, 4]
    for m in trains:
        assert 0 <= m["policy"]["baseline"] and m["policy"]["entropy"] > 0 and np.isfinite(m["policy"]["reward"])
        space.validate(parse_arch(m["policy"]["likely"], space.name))
    for r in jsonl(out / "pool.jsonl"):
        space.validate(parse_arch(r["arch"], space.name))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    for tag in ("policy/reward", "policy/baseline", "policy/entropy", "policy/loss"):
        assert [e.step for e in acc.Scalars(tag)][:2] == [1, 2], tag
    assert "policy/likely" in acc.Tags()["images"]
    if source != "ptb":
        return  # the matrix kills and resumes the others
    run = tmp_path / "killed"
    assert matrix.killed(source, "enas", 1, run).returncode == -9  # right after epoch 1 and its policy training
    code, _, err = cli(["search", "--resume", run, "--no-progress"])
    assert code == 0, err
    for name in ("pool.jsonl", "metrics.jsonl"):
        assert jsonl.untimed(jsonl(run / name)) == jsonl.untimed(jsonl(out / name)), name
    curves = [{k: v for k, v in tb_scalars(p).items() if "seconds" not in k} for p in (run, out)]
    assert curves[0] == curves[1]


def test_the_policy_draws_the_supernets_architectures(matrix, monkeypatch, cli, tmp_path):
    """With --sampling policy every training minibatch's architecture comes from the policy's sampler."""
    from nao_ws.search.sources import supernet as source_module
    from nao_ws.search.strategies import enas

    drawn, trained = [], []
    real_draw = enas.EnasStrategy.draw

    def draw(self, n, rng):
        tokens, archs = real_draw(self, n, rng)
        drawn.extend(archs)
        return tokens, archs

    real_advance = source_module.SupernetSource.advance

    def advance(self, round_, pool, rng, monitor, pick=None):
        assert pick is not None
        return real_advance(self, round_, pool, rng, monitor, lambda: trained.append(pick()) or trained[-1])

    monkeypatch.setattr(enas.EnasStrategy, "draw", draw)
    monkeypatch.setattr(source_module.SupernetSource, "advance", advance)
    code, _, err = cli(matrix.args("nb201", "enas") + ["--output", tmp_path / "run"])
    assert code == 0, err
    assert trained and all(a in drawn for a in trained)


def test_a_ptb_search_and_its_cell_output(ptb, cli, capsys, data, jsonl):
    """The PTB search writes its run folder; its best cell trains as its search scored it (loose ends), and a
    cell given as text gets the final recipe's output (all nodes)."""
    pool = jsonl(ptb / "pool.jsonl")
    assert {r["round"] for r in pool} == {0, 1} and "nao" in {r["origin"] for r in pool}
    assert all(r["score"] == -r["valid_loss"] for r in pool)
    best = ptb / "best.json"
    dry = ["train", "--task", "ptb", "--data-dir", data("ptb-tiny"), "--preset", "smoke", "--dry-run", "--json"]
    for arch, flags, want in ((best, [], "loose"), (best, ["--cell-output", "all"], "all"),
                              (json.loads(best.read_text())["text"], [], "all")):
        code, out, err = cli(dry + ["--arch", arch] + flags, capsys)
        assert code == 0, err
        assert json.loads(out)["cell_output"] == want


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(ptb, cli, tmp_path, capsys):
    out_dir = tmp_path / "run"
    shutil.copytree(ptb, out_dir)
    best = json.loads((out_dir / "best.json").read_text())
    ckpts = sorted((out_dir / "checkpoints").glob("ckpt-*.pt"))
    data = ckpts[-1].read_bytes()
    ckpts[-1].write_bytes(data[: len(data) // 2])  # a write cut short
    with pytest.warns(UserWarning, match="fails its checksum"):
        code, out, err = cli(["search", "--resume", out_dir, "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads((out_dir / "best.json").read_text())["text"] == best["text"]
    assert "falling back" in (out_dir / "log.txt").read_text()


def test_scores_written_before_a_death_are_kept(matrix, cli, monkeypatch, tb_scalars, tmp_path, jsonl):
    """Dying right after the first scoring wrote its pool records, before the round's figures: the resume keeps
    them (they come from the checkpointed supernet) and scores nothing again; TensorBoard shows epoch 1 once."""
    class Died(Exception):
        pass

    real_keep, died, scored = driver.Search.keep, [], []

    def keep_then_die(self, records):
        real_keep(self, records)
        if records and not died:
            died.append(True)
            raise Died

    monkeypatch.setattr(driver.Search, "keep", keep_then_die)
    out_dir = tmp_path / "run"
    with pytest.raises(Died):
        cli(matrix.args("nb201", "random") + ["--epochs", "1", "--rerank-top", "0", "--output", out_dir])
    assert len(jsonl(out_dir / "pool.jsonl")) == 6
    monkeypatch.setattr(driver.Search, "keep", real_keep)
    real_score = supernets.Nb201Ws.score
    monkeypatch.setattr(supernets.Nb201Ws, "score", lambda self, archs, m: scored.append(archs) or real_score(self, archs, m))
    assert cli(["search", "--resume", out_dir, "--no-progress"])[0] == 0
    assert scored == [] and [r["round"] for r in jsonl(out_dir / "pool.jsonl")] == [0] * 6
    curves = tb_scalars(out_dir)
    assert [step for step, _ in curves["pool/max"]] == [1] and [step for step, _ in curves["supernet/loss"]] == [1]


def test_final_pool_history_ranks_every_cell_scored_and_resumes(matrix, cli, monkeypatch, jsonl, tmp_path):
    """--final-pool history: the last round scores every cell the search scored, in one ranking (the mix's ranks
    run over all of them), and the re-ranking takes its top; a death right after those scores were written
    resumes without scoring again and ends as the uninterrupted run."""
    from scipy.stats import rankdata

    args = matrix.args("nb201", "nao") + ["--score-proxy", "jacob_cov", "--final-pool", "history", "--rerank-top", "2"]
    assert cli(args + ["--output", tmp_path / "ref"])[0] == 0
    pool = jsonl(tmp_path / "ref" / "pool.jsonl")
    last = [r for r in pool if r["round"] == 1]
    assert sorted(r["arch"] for r in last) == sorted({r["arch"] for r in pool}) and len(last) > 6  # pool size 6
    proxy = [-np.inf if r["jacob_cov"] is None else r["jacob_cov"] for r in last]
    want = (rankdata([r["inherited_score"] for r in last]) + rankdata(proxy)) / (2 * len(last))
    assert [r["score"] for r in last] == pytest.approx(want)
    reranked = [r["arch"] for r in jsonl(tmp_path / "ref" / "metrics.jsonl") if r["phase"] == "rerank"]
    assert reranked == [r["arch"] for r in sorted(last, key=lambda r: -r["score"])[:2]]

    class Died(Exception):
        pass

    real_keep, kept, scored = driver.Search.keep, [], []

    def keep_then_die(self, records):
        real_keep(self, records)
        kept.extend([records] if records else [])
        if len(kept) == 2:
            raise Died

    monkeypatch.setattr(driver.Search, "keep", keep_then_die)
    with pytest.raises(Died):
        cli(args + ["--output", tmp_path / "killed"])
    monkeypatch.setattr(driver.Search, "keep", real_keep)
    real_score = supernets.Nb201Ws.score
    monkeypatch.setattr(supernets.Nb201Ws, "score", lambda self, archs, m: scored.append(archs) or real_score(self, archs, m))
    assert cli(["search", "--resume", tmp_path / "killed", "--no-progress"])[0] == 0
    assert scored == []
    for name in ("pool.jsonl", "metrics.jsonl"):
        assert jsonl.untimed(jsonl(tmp_path / "killed" / name)) == jsonl.untimed(jsonl(tmp_path / "ref" / name))


def test_divergence_rolls_back_with_a_lower_lr(cli, data, tmp_path, monkeypatch, capsys, tb_scalars, jsonl):
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
    code, out, err = cli(["search", "--task", "ptb", "--data-dir", data("ptb-tiny"), "--preset", "smoke", "--epochs",
                          "2", "--eval-every", "2", "--checkpoint-every", "2", "--pool-size", "4", "--new-per-iter",
                          "2", "--seeds", "2", "--rerank-top", "0", "--output", out_dir, "--no-progress"], capsys)
    assert code == 0, err
    assert "rolled back to epoch 0" in (out_dir / "log.txt").read_text()
    lrs = [m["lr"] for m in jsonl(out_dir / "metrics.jsonl") if m["phase"] == "train"]
    assert len(lrs) == 2 and lrs[0] == pytest.approx(0.25 * 0.5)  # epoch 1 was trained again at half the lr
    assert [(step, pytest.approx(lr)) for step, lr in tb_scalars(out_dir)["supernet/lr"]] == [(1, lrs[0]), (2, lrs[1])]


def test_sgdr_restarts():
    sgdr_lr = supernets.sgdr_lr
    assert sgdr_lr(0, 0.05, 5e-4, 10, 2) == pytest.approx(0.05)
    assert sgdr_lr(5, 0.05, 5e-4, 10, 2) == pytest.approx((0.05 + 5e-4) / 2)
    assert sgdr_lr(10, 0.05, 5e-4, 10, 2) == pytest.approx(0.05)  # restart after T0 = 10
    assert sgdr_lr(29, 0.05, 5e-4, 10, 2) < sgdr_lr(20, 0.05, 5e-4, 10, 2)  # second period lasts 20 epochs
    assert sgdr_lr(30, 0.05, 5e-4, 10, 2) == pytest.approx(0.05)


def test_rerank_uses_ref_pts_recipe(monkeypatch):
    """Reference §3.1, end of search: ref-PT's re-ranking trains N = 3, C = 20 for 10 epochs in batches of 64,
    cosine 0.025 -> 0.001, aux head 0.4, head keep 0.6, weight decay 3e-4, no cutout and (in effect) no
    drop-path."""
    from nao_ws.train import cnn as train_cnn

    got = {}

    def fit_candidate(arch, data, recipe, device, seed, monitor=None):
        got["recipe"] = recipe
        return {"valid_acc": 0.5}

    monkeypatch.setattr(train_cnn, "fit_candidate", fit_candidate)
    ws = supernets.CnnWs.__new__(supernets.CnnWs)  # no supernet, no data
    ws.cfg, ws.data, ws.device = options.CnnWsSearch(task="cifar10"), None, "cpu"
    assert ws.rerank(get_space("cnn-ws").sample(np.random.default_rng(0)), 0, None)["score"] == 0.5
    r = got["recipe"]
    assert (r.layers, r.channels, r.epochs, r.batch_size, r.lr, r.lr_min, r.momentum, r.decay(), r.grad_clip,
            r.aux_weight, r.head_keep, r.cutout, r.drop_path_keep) == \
        (3, 20, 10, 64, 0.025, 0.001, 0.9, 3e-4, 5.0, 0.4, 0.6, 0, 1.0)


def _config(task, space, preset):
    from nao_ws.config.options import resolve

    cls, presets, base = options.config_for(task, space, None)
    return resolve(cls, presets, preset, None, {"task": task}, base=base)


def test_paper_presets_follow_the_reference():
    cnn = _config("cifar10", None, "paper")
    assert (cnn.layers, cnn.channels, cnn.batch_size, cnn.epochs, cnn.pool_size, cnn.new_per_iter,
            cnn.random_per_iter, cnn.eval_every, cnn.seeds, cnn.controller_epochs) == \
        (2, 20, 160, 150, 1000, 500, 50, 30, 100, 1000)
    rnn = _config("ptb", None, "paper")
    assert (rnn.emb_size, rnn.batch_size, rnn.bptt, rnn.lr, rnn.epochs, rnn.eval_every, rnn.new_per_iter) == \
        (300, 256, 35, 0.25, 1000, 200, 300)
    nb = _config("cifar10", "nb201", "paper")
    assert (nb.layers, nb.channels, nb.batch_size, nb.lr, nb.weight_decay, nb.nesterov, nb.epochs, nb.eval_every) == \
        (5, 16, 256, 0.1, 5e-4, True, 150, 30)


# -- nao-ws score ----------------------------------------------------------------------------------------------

def _folder_bytes(path: Path) -> dict:
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _score_lines(run, pool, tmp_path, cli, capsys):
    """``nao-ws score`` on ``pool``'s architectures (with a comment and a blank line) -> its JSON records."""
    archs = tmp_path / "archs.txt"
    archs.write_text("# the pool\n\n" + "".join(r["arch"] + "\n" for r in pool))
    before = _folder_bytes(run)
    code, out, err = cli(["score", "--run", run, "--archs", archs, "--output", tmp_path / "scores.jsonl",
                          "--no-progress"], capsys)
    assert code == 0, err
    assert _folder_bytes(run) == before  # the run folder is only read
    assert (tmp_path / "scores.jsonl").read_text().splitlines() == out.splitlines()
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("which", ["cnn-ws", "nb201", "ptb"])
def test_score_equals_the_pool_scores_of_the_same_supernet(which, matrix, ptb, tmp_path, cli, capsys, jsonl):
    """A finished run: its last checkpoint's supernet is the one that scored the last pool."""
    run = ptb if which == "ptb" else matrix.reference(which, "random")
    last = [r for r in jsonl(run / "pool.jsonl") if r["epoch"] == 2]
    got = _score_lines(run, last, tmp_path, cli, capsys)
    assert [r["line"] for r in got] == list(range(3, 3 + len(last)))
    for r, want in zip(got, last):
        assert (r["arch"], r["canonical"], r["epoch"]) == (want["arch"], want["canonical"], 2)
        assert r["score"] == pytest.approx(want["score"], rel=1e-6, abs=1e-9)
        assert r["valid_loss"] == pytest.approx(want["valid_loss"], rel=1e-6)


def test_score_on_a_killed_run(matrix, tmp_path, cli, capsys, jsonl):
    """Killed right after its first proposals were logged: the newest valid checkpoint holds the supernet of
    epoch 1, which scored the first pool."""
    run = tmp_path / "killed"
    assert matrix.killed("cnn-ws", "nao", 3, run).returncode == -9
    first = [r for r in jsonl(run / "pool.jsonl") if r["epoch"] == 1]
    got = _score_lines(run, first, tmp_path, cli, capsys)
    assert len(got) == len(first) == 6 and {r["epoch"] for r in got} == {1}
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in first], rel=1e-6)


def test_score_errors_are_one_line(matrix, tmp_path, cli, capsys, jsonl):
    run = matrix.reference("cnn-ws", "random")
    cnn_arch = jsonl(run / "pool.jsonl")[0]["arch"]
    rnn_arch = get_space("rnn").format(get_space("rnn").sample(np.random.default_rng(0)))
    no_ckpt = tmp_path / "fresh"
    no_ckpt.mkdir()
    (no_ckpt / "config.json").write_text((run / "config.json").read_text())

    def error(run_dir, lines, *needles):
        archs = tmp_path / "archs.txt"
        if lines is not None:
            archs.write_text("".join(line + "\n" for line in lines))
        code, out, err = cli(["score", "--run", run_dir, "--archs", archs, "--no-progress"], capsys)
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
