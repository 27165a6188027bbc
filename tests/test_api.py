"""nao_ws.api: README's example as written, the same runs as the commands, NaoWsError for every user error."""
import json
import re
from pathlib import Path

import pytest

from nao_ws import api
from nao_ws.errors import NaoWsError

README = Path(__file__).resolve().parents[1] / "README.md"
TABLE = {"space": "nb201", "benchmark": "nb201-12epoch"}
WS = {"space": "nb201", "preset": "smoke", "epochs": 1, "eval_every": 1, "pool_size": 4, "new_per_iter": 2,
      "random_per_iter": 1, "score_images": 20, "calib_images": 16, "rerank_top": 0, "progress": False}
CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"]


def test_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    code = re.search(r"<!-- api-example -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    best = json.loads((tmp_path / "runs/nb201-rea/best.json").read_text())
    assert out.startswith(f"{best['text']} {best['score']} {best['test_accuracy']}\n")
    assert "error: --budget 0 must be >= 1" in out and "parameters" in out
    assert all((tmp_path / "runs/nb201-rea/report" / f).stat().st_size > 0 for f in ("best.png", "pool.png"))


def test_search_returns_what_the_command_wrote(tmp_path, cli, jsonl):
    args = ["search", "--task", "cifar10", "--space", "nb201", "--benchmark", "nb201-12epoch", "--strategy", "rea",
            "--budget", "30", "--seed", "4", "--no-progress", "--output", tmp_path / "cli"]
    code, out, _ = cli(args)
    assert code == 0
    result = api.search("cifar10", **TABLE, strategy="rea", budget=30, seed=4, progress=False, output=tmp_path / "api")
    assert result.run == tmp_path / "api" and result.pool == jsonl(result.run / "pool.jsonl")
    assert json.loads((result.run / "best.json").read_text()) == result.record
    assert jsonl.untimed(result.pool) == jsonl.untimed(jsonl(tmp_path / "cli" / "pool.jsonl"))
    printed = json.loads(out)
    assert (printed["best"], printed["score"]) == (result.best, result.score) == (result.record["text"],
                                                                                  result.record["score"])


@pytest.mark.parametrize("call, message", [
    (lambda: api.search("cifar10", **TABLE, bogus=1), "--bogus does not apply"),
    (lambda: api.search("cifar10", **TABLE, strategy="rea", seeds=3), "--seeds is an option of --strategy nao"),
    (lambda: api.search("mnist"), "--task mnist is unknown"),
    (lambda: api.search(**TABLE), "--task is required"),
    (lambda: api.search("cifar10", **TABLE, budget="many"), "'budget' must be int"),
    (lambda: api.search("cifar10", **TABLE, preset="huge"), "unknown preset 'huge'"),
    (lambda: api.train("cifar10", arch="0 1 2", dry_run=True), "integers"),  # the space's error, as NaoWsError
    (lambda: api.train("mnist", arch="0 1 2"), "--task mnist is unknown"),
    (lambda: api.score("no-such-run", ["0 1 2"]), "not a run folder"),
    (lambda: api.report("no-such-run"), "not a run folder"),
    (lambda: api.score(archs=[CELLS[0]]), "give --run (a search's inherited weights) or --proxy"),
    (lambda: api.score(archs=[CELLS[0], "0 1 2 3"], proxy="params"), "nb201: got 4 integers"),
])
def test_user_errors_raise_nao_ws_error_and_leave_no_run_folder(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NaoWsError, match=re.escape(message)):
        call()
    assert list(tmp_path.iterdir()) == []


def test_score_takes_a_list_or_a_file_and_matches_the_searchs_last_round(tmp_path):
    result = api.search("cifar10", **WS, strategy="random", output=tmp_path / "ws")
    last = [r for r in result.pool if r["round"] == max(p["round"] for p in result.pool)]
    texts = [r["arch"] for r in last]
    (tmp_path / "archs.txt").write_text("# the last pool\n" + "\n".join(texts) + "\n")
    from_list = api.score(result.run, texts, progress=False)
    from_file = api.score(result.run, tmp_path / "archs.txt", progress=False)
    assert [r["score"] for r in from_list] == [r["score"] for r in last]
    assert [{**r, "line": 0} for r in from_list] == [{**r, "line": 0} for r in from_file]
    with pytest.raises(NaoWsError, match="not an architecture's text form"):
        api.score(result.run, [str(tmp_path / "archs.txt")])  # never read as a file


def test_score_with_a_proxy_prints_what_the_command_prints(tmp_path, cli):
    (tmp_path / "cells.txt").write_text("\n".join(CELLS) + "\n")
    code, out, err = cli(["score", "--proxy", "params,synflow", "--archs", tmp_path / "cells.txt", "--task",
                          "cifar10-sample", "--proxy-batch", "8", "--seed", "2", "--no-progress"])
    assert code == 0, err
    records = api.score(archs=CELLS, proxy="params,synflow", task="cifar10-sample", proxy_batch=8, seed=2,
                        progress=False)
    assert records == [json.loads(line) for line in out.splitlines()]
    assert [r["score"] for r in records] == [r["params"] for r in records] and records[0]["synflow"] > 0


def test_search_and_train_give_their_run_folder_back(tmp_path):
    from nao_ws.runs import RunDir

    result = api.search("cifar10", **TABLE, strategy="random", budget=5, seed=1, progress=False, output=tmp_path / "s")
    RunDir.open(result.run).release()  # a finished search no longer owns its folder
    # refused after the folder was opened; the errors (kept, as a session keeps its last one) hold their frames
    with pytest.raises(NaoWsError, match="drop the other options") as refused:
        api.search(resume=result.run, budget=6)
    with pytest.raises(NaoWsError) as refused_train:  # a search's folder is no training's
        api.train(resume=result.run, progress=False)
    again = api.search(resume=result.run, progress=False)  # neither refusal kept the folder's lock
    assert refused.tb is not None and refused_train.tb is not None
    assert again.run == result.run and again.record == result.record
