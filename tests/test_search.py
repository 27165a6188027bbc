"""The search driver: every strategy on the table and on standalone training (the supernets' part of the matrix
is test_search_supernet.py), the same run folder for all, exact resume after SIGKILL, what a strategy learns
from, and the errors of impossible searches."""
import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nao_ws.search import driver
from nao_ws.search.strategies import Proposal
from nao_ws.search.strategies.nao import ControllerDriver
from supernet.spaces import get_space, parse_arch

RUN_FILES = ("config.json", "pool.jsonl", "metrics.jsonl", "best.json", "log.txt")
# after the k-th log write: mid-round, before a round's figures, before a proposal's checkpoint, ...
KILLS = {("table", "random"): 4, ("table", "rea"): 11, ("table", "nao"): 6, ("table", "enas"): 9, ("table", "local"): 13,
         ("proxy", "rea"): 7, ("proxy", "nao"): 6,
         ("standalone", "random"): 3, ("standalone", "rea"): 5, ("standalone", "nao"): 7, ("standalone", "enas"): 6}
MATRIX = [(source, strategy) for source in ("table", "standalone") for strategy in ("random", "rea", "nao", "enas")] + \
    [("table", "local"), ("proxy", "rea"), ("proxy", "nao")]


def check_run_folder(out: Path, source: str, strategy: str, jsonl) -> None:
    """The files every search writes, and what they must hold whatever the source and strategy."""
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert list((out / "checkpoints").glob("ckpt-*.pt")) and list((out / "tb").iterdir())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["strategy"] == strategy
    space = get_space(cfg["space"])
    pool = jsonl(out / "pool.jsonl")
    assert [r["query"] for r in pool] == list(range(1, len(pool) + 1))
    for r in pool:
        assert r["canonical"] == space.format(space.canonical(parse_arch(r["arch"], space.name)))
        assert r["origin"] in ("initial", "random", strategy) and np.isfinite(r["score"])
    if strategy != "random":
        assert strategy in {r["origin"] for r in pool}, "the strategy proposed nothing"
    rounds = {}
    for r in pool:
        rounds.setdefault(r["round"], []).append(r["canonical"])
    assert all(len(set(c)) == len(c) for c in rounds.values())  # no round scores one network twice
    best = json.loads((out / "best.json").read_text())
    assert best["strategy"] == strategy and best["source"] == source and best["query"]["arch"] == best["text"]
    assert parse_arch(str(out / "best.json")) == parse_arch(best["text"], space.name)
    phases = [m["phase"] for m in jsonl(out / "metrics.jsonl")]
    assert phases.count("score") == len(rounds) and phases.count("propose") == len(rounds) - 1


def check_resume(source: str, strategy: str, matrix, cli, jsonl, tb_scalars, tmp_path) -> None:
    """Killed right after a log write and resumed, the search ends as the uninterrupted one did."""
    ref = matrix.reference(source, strategy)
    run = tmp_path / "killed"
    proc = matrix.killed(source, strategy, KILLS.get((source, strategy), 3), run)
    assert proc.returncode == -9, proc.stderr[-3000:]
    code, _, err = cli(["search", "--resume", run, "--no-progress"])
    assert code == 0, err
    assert "resumed" in (run / "log.txt").read_text()
    for name in ("pool.jsonl", "metrics.jsonl"):
        assert jsonl.untimed(jsonl(run / name)) == jsonl.untimed(jsonl(ref / name)), name
    assert jsonl.untimed(json.loads((run / "best.json").read_text())) == \
        jsonl.untimed(json.loads((ref / "best.json").read_text()))
    curves = [{k: v for k, v in tb_scalars(p).items() if "seconds" not in k} for p in (run, ref)]
    assert curves[0] == curves[1]


@pytest.mark.parametrize("source,strategy", MATRIX)
def test_every_strategy_writes_the_run_folder(source, strategy, matrix, jsonl):
    check_run_folder(matrix.reference(source, strategy), source, strategy, jsonl)


@pytest.mark.parametrize("source,strategy", MATRIX)
def test_killed_and_resumed_equals_uninterrupted(source, strategy, matrix, cli, jsonl, tb_scalars, tmp_path):
    check_resume(source, strategy, matrix, cli, jsonl, tb_scalars, tmp_path)


def test_the_table_reads_its_test_column_once_the_budget_is_spent(matrix, jsonl, data):
    from nao_ws.search.sources.table import load_table

    out = matrix.reference("table", "rea")
    pool = jsonl(out / "pool.jsonl")
    table = load_table(data("nb201", "nb201-cifar10-12epoch.csv"), "cifar10")
    assert len(pool) == 16 and all(r["score"] == table.score(parse_arch(r["arch"], "nb201")) for r in pool)
    best = json.loads((out / "best.json").read_text())
    top = max(pool, key=lambda r: r["score"])
    assert (best["text"], best["valid_accuracy"]) == (top["arch"], top["score"])
    assert best["test_accuracy"] == table.test_accuracy(parse_arch(top["arch"], "nb201"))
    assert "test" not in json.dumps(jsonl(out / "metrics.jsonl"))  # nothing before the end read the test column


def test_a_proxy_search_scores_as_nao_ws_score_does(matrix, cli, jsonl, tmp_path):
    """The proxy source and ``nao-ws score --proxy`` draw one minibatch and one initialisation per seed, so a
    search's pool holds exactly the scores the command prints for its cells."""
    pool = jsonl(matrix.reference("proxy", "rea") / "pool.jsonl")
    archs = tmp_path / "archs.txt"
    archs.write_text("".join(r["arch"] + "\n" for r in pool))
    code, out, err = cli(["score", "--proxy", "jacob_cov", "--archs", archs, "--task", "cifar10-sample",
                          "--proxy-batch", "16", "--seed", "3", "--no-progress"])
    assert code == 0, err
    assert [json.loads(line)["jacob_cov"] for line in out.splitlines()] == [r["score"] for r in pool]


def test_a_proxy_search_refuses_what_proxies_cannot_score(cli, tmp_path):
    for flags, words in ((["--task", "ptb", "--space", "rnn"], "image"),
                         (["--task", "cifar10", "--space", "nb201", "--proxy-batch", "9999"], "--proxy-batch 9999")):
        code, _, err = cli(["search", *flags, "--proxy", "synflow", "--preset", "smoke",
                            "--output", tmp_path / "x", "--no-progress"])
        assert code == 2 and err.strip().splitlines()[-1].startswith("error: ") and words in err, err
        assert len([line for line in err.splitlines() if not line.startswith("run folder:")]) == 1, err
        assert not (tmp_path / "x").exists()  # the images are read once the folder exists: it is discarded


# -- what a strategy learns from -------------------------------------------------------------------------------

class Rescorer:
    """A stand-in for a supernet: its scores age, and scoring again gives 100 + index."""

    stale, device = True, torch.device("cpu")

    def __init__(self):
        self.calls = []

    def score(self, archs, monitor):
        self.calls.append(archs)
        yield [(i, {"score": 100.0 + i}) for i in range(len(archs))]


@pytest.mark.parametrize("how", ["pool", "all", "rescore"])
def test_history_of_an_ageing_source(how):
    """pool: the pool's current scores; all: every architecture scored, each with its latest score; rescore:
    every architecture scored again by the source in one call (a proxy mix ranks the cells scored together)."""
    space = get_space("cnn-ws")
    rng = np.random.default_rng(0)
    texts = [space.format(space.sample(rng)) for _ in range(6)]
    search = driver.Search.__new__(driver.Search)  # the phase's parts only: no supernet, no data
    search.cfg, search.source, search.monitor = SimpleNamespace(history=how, space="cnn-ws"), Rescorer(), None
    search.state = driver.State(pool=texts[2:], order=texts)
    search.latest = {t: {"score": float(i)} for i, t in enumerate(texts)}
    got = [(space.format(a), s) for a, s in search.history()]
    want = {"pool": (texts[2:], [2.0, 3.0, 4.0, 5.0]), "all": (texts, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
            "rescore": (texts, [100.0, 101.0, 102.0, 103.0, 104.0, 105.0])}[how]
    assert got == list(zip(*want))
    assert search.source.calls == ([[parse_arch(t, "cnn-ws") for t in texts]] if how == "rescore" else [])


@pytest.mark.parametrize("holdout", [0.0, 0.25])
def test_controller_metrics_cost_no_training_data(holdout):
    """Before a fit, the last fit's metrics on the architectures it never saw; after it, the fit on its training
    set. Held-out metrics only with a holdout."""
    from nao_ws.search.strategies.nao import NaoStrategy

    space = get_space("cnn-ws")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(12)]
    scores = [float(s) for s in rng.random(12)]
    ctrl = ControllerDriver.for_space(space, torch.device("cpu"), train={"epochs": 3, "holdout": holdout})
    nao = NaoStrategy(space, ctrl, seeds=4, candidates=0, per_round=4, round_fraction=0.0, by_prediction=False, seed=0)
    nao.propose(list(zip(archs[:8], scores[:8])), 2, set(), rng)
    assert not any(k.startswith("new_") for k in nao.metrics["controller"])  # no earlier fit to measure
    want_new = ctrl.evaluate(archs[8:], scores[8:])
    nao.propose(list(zip(archs, scores)), 2, set(), rng)
    got = nao.metrics["controller"]
    assert got["n_new"] == 4 and {k: got[f"new_{k}"] for k in want_new} == want_new
    assert got["train_kendall_tau"] != got["new_kendall_tau"]
    assert ("kendall_tau" in got) == (holdout > 0) and got["n_holdout"] == int(holdout * 12)


def test_a_strategy_that_finds_too_few_is_topped_up_with_random_architectures(monkeypatch, tmp_path, cli, data, jsonl):
    """The driver fills a round to its size: NAO's generation finding nothing costs nothing but the strategy."""
    from nao_ws.search.strategies import nao

    monkeypatch.setattr(nao.NaoStrategy, "propose", lambda self, history, n, known, rng: [])
    args = ["search", "--task", "cifar10", "--space", "nb201", "--benchmark", data("nb201", "nb201-cifar10-12epoch.csv"),
            "--preset", "smoke", "--budget", "16", "--output", tmp_path / "run", "--no-progress"]
    assert cli(args)[0] == 0
    pool = jsonl(tmp_path / "run" / "pool.jsonl")
    assert len(pool) == 16 and {r["origin"] for r in pool} == {"initial", "random"}


def test_proposals_are_never_known(monkeypatch):
    """Every strategy adds what it proposes to the known set and never proposes a known canonical class."""
    from nao_ws.search.strategies.rea import ReaStrategy

    space = get_space("nb201")
    rng = np.random.default_rng(1)
    history = [(space.sample(rng), float(i)) for i in range(5)]
    known = {space.format(space.canonical(a)) for a, _ in history}
    proposals = ReaStrategy(space, population=5, tournament=2).propose(history, 30, known, rng)
    keys = [space.format(space.canonical(p.arch)) for p in proposals]
    assert len(proposals) == 30 and len(set(keys)) == 30 and set(keys) <= known
    assert not {space.format(space.canonical(a)) for a, _ in history} & set(keys)
    assert all(isinstance(p, Proposal) and p.origin == "rea" for p in proposals)


# -- resume ---------------------------------------------------------------------------------------------------

def test_resume_restores_a_cut_pool_log(matrix, cli, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(matrix.reference("table", "rea"), out)
    full = (out / "pool.jsonl").read_text()
    (out / "pool.jsonl").write_text(full[: len(full) // 2])  # cut mid-line
    assert cli(["search", "--resume", out, "--no-progress"])[0] == 0
    assert (out / "pool.jsonl").read_text() == full


def test_a_folder_of_the_previous_version_is_refused_in_one_line(matrix, cli, tmp_path, capsys):
    """nao-ws 0.1's three loops wrote other checkpoints: resume names the version instead of failing later."""
    import shutil

    from nao_ws.runs import RunDir

    out = tmp_path / "old"
    shutil.copytree(matrix.reference("table", "random"), out)
    run = RunDir(out)
    latest = run.load_latest_checkpoint()
    run.save_checkpoint({"kind": "tabular-search", "config": latest["config"], "rounds": 3}, step=10**6)
    code, _, err = cli(["search", "--resume", out], capsys)
    assert code == 2 and "written by nao-ws 0.1" in err and len(err.strip().splitlines()) == 1


# -- errors ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["--task", "ptb", "--space", "cnn-ws"], "searches the rnn space"),
    (["--task", "cifar10", "--space", "rnn"], "searches the cnn-ws"),
    (["--task", "cifar10", "--space", "dag"], "--space dag is unknown"),
    (["--task", "cifar10", "--seeds", "50", "--pool-size", "20"], "exceeds --pool-size"),
    (["--task", "cifar10", "--eval-every", "9", "--epochs", "4"], "--eval-every 9"),
    (["--task", "cifar10", "--strategy", "evolution"], "--strategy 'evolution' is unknown"),
    (["--task", "cifar10", "--strategy", "rea", "--seeds", "5"], "--seeds is an option of --strategy nao, not of rea"),
    (["--task", "cifar10", "--population", "5"], "--population is an option of --strategy rea, not of nao"),
    (["--task", "cifar10", "--strategy", "rea", "--population", "3", "--tournament", "4"], "--tournament 4"),
    (["--task", "cifar10", "--history", "latest"], "--history 'latest' is unknown"),
    (["--task", "cifar10", "--sampling", "policy"], "use it with --strategy enas, not nao"),
    (["--task", "cifar10", "--policy-lr", "0.1"], "--policy-lr is an option of --strategy enas, not of nao"),
    (["--task", "cifar10", "--strategy", "enas", "--policy-preset", "tuned"], "--policy-preset 'tuned' is unknown"),
    (["--task", "cifar10", "--strategy", "enas", "--baseline-decay", "1"], "--baseline-decay"),
    (["--task", "ptb", "--cell-output", "last"], "--cell-output 'last' is unknown"),
    (["--task", "cifar10", "--emb-size", "8"], "--emb-size does not apply to a search on the cnn-ws supernet"),
    (["--task", "cifar10", "--space", "nb201", "--benchmark", "nb201-12epoch", "--strategy", "random", "--sampling",
      "fair"], "--sampling does not apply to a search on a benchmark table (--benchmark): drop it"),  # not "--task"
    (["--task", "cifar10", "--space", "nb201", "--benchmark", "nb201-12epoch", "--proxy", "synflow"],
     "--proxy does not apply to a search on a benchmark table"),
    (["--task", "cifar10", "--space", "nb201", "--proxy", "synflow", "--epochs", "3"],
     "--epochs does not apply to a search scored by a zero-cost proxy"),
    (["--task", "cifar10", "--budget", "10"], "--budget does not apply to a search on the cnn-ws supernet"),
    (["--task", "ptb", "--aux-weight", "0.4"], "--aux-weight does not apply to a search on the rnn supernet"),
    (["--task", "cifar10", "--preset", "huge"], "unknown preset 'huge'"),
    (["--resume", "/nonexistent/run"], "not a run folder"),
    (["--task", "ptb", "--space", "cnn"], "runs on cifar10"),
    (["--task", "cifar10", "--space", "nb201", "--benchmark", "/nonexistent.csv"], "does not exist"),
    (["--task", "cifar10", "--space", "nb201", "--benchmark", "x.csv", "--budget", "5000"], "4930"),
    (["--task", "cifar100", "--preset", "smoke"], "the bundled sample holds CIFAR-10 images, not cifar100's"),
    (["--task", "cifar100", "--space", "nb201", "--preset", "smoke"], "use --task cifar10 for a smoke run"),
])
def test_bad_options_are_one_line_errors(args, needle, cli, capsys, tmp_path):
    code, _, err = cli(["search", *args, "--output", tmp_path / "x"], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_resume_rejects_new_options(cli, tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"task": "ptb"}))
    code, _, err = cli(["search", "--resume", tmp_path, "--epochs", "5"], capsys)
    assert code == 2 and "drop the other options (--epochs)" in err


@pytest.mark.parametrize("argv, shown, hidden", [
    ([], ["Score source: a weight-sharing supernet", "Score source: a benchmark table", "Strategy rea"], []),
    (["--space", "cnn", "--strategy", "rea"], ["Score source: standalone training", "--epochs INT  training epochs "
                                                                                    "of each candidate"],
     ["Score source: a weight-sharing supernet", "Strategy nao", "supernet training epochs"]),
    (["--space", "nb201", "--benchmark", "t.csv"], ["Score source: a benchmark table", "--budget"], ["--rerank-top"]),
    (["--proxy", "synflow"], ["Score source: a zero-cost proxy", "--proxy-batch"],
     ["Score source: a benchmark table", "--rerank-top"]),
    (["--strategy", "enas"], ["Strategy enas", "--policy-preset", "--tanh-constant"], ["Strategy nao", "--seeds"]),
])
def test_help_shows_the_options_of_the_search_named(argv, shown, hidden, cli, capsys):
    code, out, _ = cli(["search", *argv, "--help"], capsys)
    flat = " ".join(out.split())
    assert code == 0
    for text in shown:
        assert " ".join(text.split()) in flat, text
    for text in hidden:
        assert " ".join(text.split()) not in flat, text


def test_help_answers_without_loading_torch():
    """--help must answer at once: the command line imports no torch before a command runs."""
    import subprocess
    import sys

    code = "import sys; from nao_ws.cli import main; sys.argv = ['nao-ws']; " \
           "assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_a_long_random_search_killed_after_hundreds_of_queries_resumes_exactly(cli, data, jsonl, killed, tmp_path):
    """Reference §8's long tabular searches, the reported case: 1,500 random queries, killed after more than 300
    of them, at a kill point in the middle of a round's figures, and resumed twice over (the second resume is of
    a finished run), it ends as the uninterrupted one."""
    table = data("nb201", "nb201-cifar10-12epoch.csv")
    args = ["search", "--task", "cifar10", "--space", "nb201", "--benchmark", table, "--budget", "1500",
            "--strategy", "random", "--seed", "5", "--no-progress"]
    assert cli(args + ["--output", tmp_path / "ref"])[0] == 0
    proc = killed(args + ["--output", tmp_path / "cut"], 300)  # the 300th log write: mid-search
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert 300 < len(jsonl(tmp_path / "cut" / "pool.jsonl")) < 1500
    for _ in range(2):
        code, _, err = cli(["search", "--resume", tmp_path / "cut", "--no-progress"])
        assert code == 0, err
    for name in ("pool.jsonl", "metrics.jsonl"):  # the same records but their wall-clock seconds
        assert jsonl.untimed(jsonl(tmp_path / "cut" / name)) == jsonl.untimed(jsonl(tmp_path / "ref" / name)), name
    assert jsonl.untimed(json.loads((tmp_path / "cut" / "best.json").read_text())) == \
        jsonl.untimed(json.loads((tmp_path / "ref" / "best.json").read_text()))


def test_resume_refuses_a_benchmark_table_changed_since_the_start(cli, data, tmp_path, capsys):
    import shutil

    table = shutil.copy(data("nb201", "nb201-cifar10-12epoch.csv"), tmp_path / "table.csv")
    args = ["search", "--task", "cifar10", "--space", "nb201", "--benchmark", table, "--budget", "16",
            "--strategy", "random", "--no-progress", "--output", tmp_path / "run"]
    assert cli(args)[0] == 0
    rows = [line.split(",") for line in Path(table).read_text().splitlines()]
    column = rows[0].index("cifar10_valid")
    rows[1][column] = str(float(rows[1][column]) + 0.5)  # one accuracy of the first cell, still in range
    Path(table).write_text("".join(",".join(row) + "\n" for row in rows))
    pool = (tmp_path / "run" / "pool.jsonl").read_bytes()
    code, _, err = cli(["search", "--resume", tmp_path / "run"], capsys)
    assert code == 2 and f"{table} changed since the run" in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "run" / "pool.jsonl").read_bytes() == pool


@pytest.mark.parametrize("form", ["built-in", "gzipped"])
def test_resume_refuses_a_built_in_or_gzipped_table_changed_since_the_start(form, cli, tmp_path, capsys, monkeypatch):
    """The table shipped in the package (a later install may ship another) and a .csv.gz are checksummed too."""
    import shutil

    from nao_ws.search.sources import table as tabular

    table = Path(shutil.copy(tabular.BUILT_IN["nb201-12epoch"], tmp_path / "table.csv.gz"))
    if form == "built-in":
        monkeypatch.setitem(tabular.BUILT_IN, "nb201-12epoch", table)
    name = "nb201-12epoch" if form == "built-in" else table
    args = ["search", "--task", "cifar10", "--space", "nb201", "--benchmark", name, "--budget", "16",
            "--strategy", "random", "--no-progress", "--output", tmp_path / "run"]
    assert cli(args)[0] == 0
    rows = [line.split(",") for line in gzip.decompress(table.read_bytes()).decode().splitlines()]
    column = rows[0].index("cifar10_valid")
    rows[1][column] = str(float(rows[1][column]) + 0.5)  # one accuracy of the first cell, still in range
    table.write_bytes(gzip.compress("".join(",".join(row) + "\n" for row in rows).encode()))
    pool = (tmp_path / "run" / "pool.jsonl").read_bytes()
    code, _, err = cli(["search", "--resume", tmp_path / "run"], capsys)
    assert code == 2 and f"{name} changed since the run" in err and len(err.strip().splitlines()) == 1, err
    assert form != "built-in" or f"reinstall the nao-ws version the run started with (the built-in table is {table})" \
        in err
    assert (tmp_path / "run" / "pool.jsonl").read_bytes() == pool


def test_a_table_search_best_names_its_benchmark_index_and_loads_for_training(matrix, cli, capsys, data):
    import csv

    out = matrix.reference("table", "random")
    best = json.loads((out / "best.json").read_text())
    with open(data("nb201", "nb201-cifar10-12epoch.csv"), newline="") as fh:
        index = {row["cellstr"]: int(row["index"]) for row in csv.DictReader(fh)}
    assert best["index"] == index[best["text"]]
    code, printed, err = cli(["train", "--arch", out / "best.json", "--dry-run", "--json"], capsys)
    assert code == 0, err
    assert {k: json.loads(printed)[k] for k in ("task", "space", "arch")} == {"task": "cifar10", "space": "nb201",
                                                                              "arch": best["text"]}
