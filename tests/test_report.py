"""nao-ws report: the summary states the run's own numbers, every figure is written, several runs compare."""
import json
import shutil

import numpy as np
import pytest

from nao_ws import api
from nao_ws.errors import NaoWsError
from nao_ws.search.sources.table import load_table

TABLE = {"space": "nb201", "benchmark": "nb201-12epoch", "progress": False}
WS = {"space": "nb201", "preset": "smoke", "epochs": 2, "eval_every": 1, "pool_size": 4, "new_per_iter": 2,
      "random_per_iter": 1, "score_images": 20, "calib_images": 16, "rerank_top": 0, "seeds": 2,
      "controller_epochs": 4, "progress": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    made = {"nao": api.search("cifar10", **TABLE, strategy="nao", preset="smoke", budget=16, output=root / "nao"),
            "ws": api.search("cifar10", **WS, strategy="nao", output=root / "ws")}
    for strategy in ("rea", "random"):
        for seed in (0, 1):
            made[f"{strategy}-{seed}"] = api.search("cifar10", **TABLE, strategy=strategy, budget=24, seed=seed,
                                                    output=root / f"{strategy}-{seed}")
    return made


def check_summary(summary: dict, run, jsonl) -> None:
    """Every number the summary states is the run's own."""
    metrics, pool = jsonl(run.run / "metrics.jsonl"), jsonl(run.run / "pool.jsonl")
    assert (summary["best"], summary["score"]) == (run.best, run.score) == (run.record["text"], run.record["score"])
    assert summary["queries"] == len(pool) and summary["rounds"] == 1 + max(r["round"] for r in pool)
    assert summary["wall_seconds"] == pytest.approx(sum(m["seconds"] for m in metrics))
    assert {p: v["records"] for p, v in summary["phases"].items()} == \
        {p: sum(m["phase"] == p for m in metrics) for p in {m["phase"] for m in metrics}}
    for p, v in summary["phases"].items():
        assert v["seconds"] == pytest.approx(sum(m["seconds"] for m in metrics if m["phase"] == p))


@pytest.mark.parametrize("name, figures", [("nao", {"best.png", "pool.png", "controller.png"}),
                                           ("ws", {"best.png", "pool.png", "controller.png"}),
                                           ("rea-0", {"best.png", "pool.png"})])
def test_one_run(name, figures, runs, cli, jsonl):
    run = runs[name]
    code, out, err = cli(["report", run.run])
    assert code == 0, err
    folder = run.run / "report"
    assert {f.name for f in folder.glob("*.png")} == figures
    assert all((folder / f).stat().st_size > 1000 for f in figures)
    assert out.strip() == (folder / "summary.txt").read_text().strip()
    summary, = json.loads((folder / "summary.json").read_text())["runs"]
    check_summary(summary, run, jsonl)
    assert f"best       {run.best}" in out and f"score      {run.score:g}" in out
    assert f"{summary['queries']} scores in {summary['rounds']} rounds" in out
    if run.record["source"] == "table":
        table = load_table("nb201-12epoch", "cifar10")
        assert summary["table_best"] == max(table.valid.values()) and summary["test_accuracy"] == \
            run.record["test_accuracy"]
        assert f"the table's best validation accuracy {summary['table_best']:g}" in out


def test_several_runs_compare_by_strategy(runs, tmp_path, jsonl):
    chosen = [runs[k] for k in ("rea-0", "rea-1", "random-0", "random-1", "ws")]
    report = api.report([r.run for r in chosen], tmp_path / "report")
    assert (tmp_path / "report" / "compare.png").stat().st_size > 1000
    assert all((tmp_path / "report" / r.run.name / "best.png").stat().st_size > 1000 for r in chosen)
    for summary, run in zip(report.runs, chosen):
        check_summary(summary, run, jsonl)
    groups = {(g["strategy"], g["setting"].split(" · ")[2]): g for g in report.groups}
    assert set(groups) == {("rea", "table (nb201-12epoch)"), ("random", "table (nb201-12epoch)"), ("nao", "supernet")}
    for strategy in ("rea", "random"):
        scores = np.array([runs[f"{strategy}-{seed}"].score for seed in (0, 1)])
        g = groups[strategy, "table (nb201-12epoch)"]
        assert g["runs"] == 2 and g["score_mean"] == pytest.approx(scores.mean()) and \
            g["score_std"] == pytest.approx(scores.std())


def test_what_cannot_be_reported_is_one_line(runs, tmp_path, cli):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "config.json").write_text(json.dumps({"task": "cifar10", "arch": "0 1"}))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"task": "cifar10", "strategy": "rea"}))
    twin = tmp_path / "other" / runs["rea-0"].run.name
    twin.parent.mkdir()
    twin.symlink_to(runs["rea-1"].run)
    for args, message in [([tmp_path / "nothing"], "not a run folder"), ([tmp_path / "train"], "a training's"),
                          ([tmp_path / "empty"], "no best.json yet"),
                          ([runs["rea-0"].run, twin], "share the folder name")]:
        code, _, err = cli(["report", *args, "-o", tmp_path / "out"])
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        with pytest.raises(NaoWsError, match=message):
            api.report(args, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_reranked_score_names_its_pool_score(runs, tmp_path):
    """After a rerank, best.json's score is the retrained cell's accuracy, not a pool score: the summary says so."""
    run = shutil.copytree(runs["ws"].run, tmp_path / "ws", ignore=shutil.ignore_patterns("checkpoints", "tb"))
    best = json.loads((run / "best.json").read_text())
    best["rerank"] = {"query_score": best["score"], "score": 0.25}
    (run / "best.json").write_text(json.dumps({**best, "score": 0.25}))
    report = api.report(run)
    assert report.runs[0]["score"] == 0.25 and report.runs[0]["pool_score"] == best["score"]
    assert f"score      0.25 (the rerank's, retrained from scratch; its pool score {best['score']:.4g})" in report.text


def test_a_proxy_run_names_its_proxy(tmp_path, jsonl):
    run = api.search("cifar10", space="nb201", proxy="params", preset="smoke", strategy="random", budget=6,
                     progress=False, output=tmp_path / "proxy")
    report = api.report(run.run)
    check_summary(report.runs[0], run, jsonl)
    assert report.runs[0]["proxy"] == "params" and "· proxy (params) · strategy random" in report.text
    assert {f.name for f in report.figures} == {"best.png", "pool.png"}
