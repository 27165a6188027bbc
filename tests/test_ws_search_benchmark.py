"""benchmarks/ws_search.py's read-outs of a finished supernet search: the table's best cells among what it scored
(the ceiling of a perfect final choice) and the offline re-ranking, which must choose as ``--rerank-top`` does."""
import json

from benchmarks.ws_search import best_scored, rerank_choices, rerank_job, table_ceiling
from nao_ws.search.sources.table import load_table
from supernet.spaces import parse_arch

FAST = ["search", "--task", "cifar10", "--space", "nb201", "--preset", "smoke", "--pool-size", "6",
        "--new-per-iter", "3", "--random-per-iter", "1", "--epochs", "2", "--eval-every", "1",
        "--strategy", "random", "--no-progress"]


def test_offline_rerank_trains_and_chooses_as_the_search_does(tmp_path, cli, jsonl):
    run = tmp_path / "run"
    code, _, err = cli(FAST + ["--rerank-top", "2", "--rerank-batch-size", "24", "--output", run])
    assert code == 0, err
    logged = [r for r in jsonl(run / "metrics.jsonl") if r.get("phase") == "rerank"]
    trained = rerank_job((str(run), 2, "", 24, 0))
    assert [(r["arch"], r["score"], r["valid_loss"]) for r in trained] == \
        [(r["arch"], r["score"], r["valid_loss"]) for r in logged]
    assert max(trained, key=lambda r: r["score"])["arch"] == json.loads((run / "best.json").read_text())["text"]


def test_a_smaller_rerank_top_trains_a_prefix_and_its_choice_is_read_off(tmp_path, cli):
    run = tmp_path / "run"
    code, _, err = cli(FAST + ["--rerank-top", "0", "--output", run])
    assert code == 0, err
    untimed = lambda results: [{k: v for k, v in r.items() if k != "seconds"} for r in results]  # noqa: E731
    trained = rerank_job((str(run), 3, "", 24, 0))
    assert untimed(rerank_job((str(run), 2, "", 24, 0))) == untimed(trained[:2])
    table = load_table("nb201-12epoch", "cifar10")
    figures = rerank_choices(trained, table, step=1)
    assert set(figures) == {"rerank1_valid", "rerank1_test", "rerank2_valid", "rerank2_test", "rerank_valid",
                            "rerank_test"}
    first, best = (parse_arch(r["arch"], "nb201") for r in (trained[0], max(trained, key=lambda r: r["score"])))
    assert (figures["rerank1_valid"], figures["rerank1_test"]) == (table.score(first), table.test_accuracy(first))
    assert (figures["rerank_valid"], figures["rerank_test"]) == (table.score(best), table.test_accuracy(best))


def test_best_scored_reads_the_final_pool_and_every_scored_cell(tmp_path, cli, jsonl):
    run = tmp_path / "run"
    code, _, err = cli(FAST + ["--rerank-top", "0", "--output", run])
    assert code == 0, err
    table = load_table("nb201-12epoch", "cifar10")
    pool = jsonl(run / "pool.jsonl")
    final = {r["arch"] for r in pool if r["round"] == max(p["round"] for p in pool)}
    figures = best_scored(run, table)
    assert (figures["pool_cells"], figures["scored_cells"]) == (6, len({r["arch"] for r in pool}))
    assert figures["scored_cells"] > 6 and figures["scored_best_valid"] >= figures["pool_best_valid"]
    assert figures["pool_best_valid"] == max(table.score(parse_arch(a, "nb201")) for a in final)
    best = json.loads((run / "best.json").read_text())["text"]
    assert figures["pool_best_valid"] >= table.score(parse_arch(best, "nb201"))


def test_table_ceiling_averages_the_tables_best_cells_by_validation():
    table = load_table("nb201-12epoch", "cifar10")
    ranked = sorted(table.valid, key=lambda ops: -table.valid[ops])
    figures = table_ceiling(table, tops=(1, 3))
    assert figures["cells"] == len(table) == 15625
    assert figures["top1_test_mean"] == table._test[ranked[0]]
    assert figures["top3_test_mean"] == round(sum(table._test[ops] for ops in ranked[:3]) / 3, 3)
