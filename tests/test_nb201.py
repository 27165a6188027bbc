"""The NAS-Bench-201 space and the tabular search on the real table (issue 13): canonical classes, round trips,
strategies that never spend a query twice, a sealed test column, exact kill-and-resume, one-line errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nao_ws import tabular
from supernet.spaces import NB201_EDGES, NB201_OPS, SpaceError, get_space, parse_arch
from test_search import cli  # the suite's in-process CLI runner (pytest puts tests/ on sys.path)

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO.parent / "shared" / "data" / "nb201" / "nb201-cifar10-12epoch.csv"
SP = get_space("nb201")
FAST = ["search", "--task", "cifar10", "--space", "nb201", "--benchmark", str(TABLE), "--preset", "smoke",
        "--no-progress"]


def lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


# -- the space -----------------------------------------------------------------------------------------------

def _authors_unique_str(ops):
    """NAS-Bench-201's own CellStructure.to_unique_str(consider_zero=True), re-stated for the comparison."""
    nodes = {0: "0"}
    for j in (1, 2, 3):
        parts = []
        for (src, dst), op in zip(NB201_EDGES, ops):
            if dst != j:
                continue
            name = NB201_OPS[op]
            if name == "none" or nodes[src] == "#":
                parts.append("#")
            elif name == "skip_connect":
                parts.append(nodes[src])
            else:
                parts.append(f"({nodes[src]})@{name}")
        nodes[j] = "+".join(sorted(parts))
    return nodes[3]


def test_canonical_classes_and_the_authors_count():
    """15,625 cells fall into 4,930 classes of equal function; the NAS-Bench-201 authors publish 6,466 unique
    cells (NATS-Bench Table 1, their to_unique_str), and each of their classes lies inside one of ours."""
    cells = SP.all_cells()
    assert len(cells) == 5 ** 6 == len(set(cells))
    ours = [SP.canonical(a) for a in cells]
    assert len(set(ours)) == SP.num_classes() == 4930
    theirs = [_authors_unique_str(a.ops) for a in cells]
    assert len(set(theirs)) == 6466
    inside = {}
    for t, c in zip(theirs, ours):
        assert inside.setdefault(t, c) == c  # a refinement: never two of our classes in one of theirs
    assert all(SP.canonical(c) == c for c in set(ours))  # idempotent


def test_canonical_merges_isomorphic_cells_and_dead_edges():
    # nodes 1 and 2 swapped (edge 1->2 none): the same network
    a = parse_arch("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    b = parse_arch("|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
    assert SP.canonical(a) == SP.canonical(b)
    # edge 2->3 is none: node 2's inputs cannot reach the output
    c = parse_arch("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    d = parse_arch("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    assert SP.canonical(c) == SP.canonical(d)
    # a different op on a live edge is a different network
    e = parse_arch("|nor_conv_1x1~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    assert SP.canonical(c) != SP.canonical(e)
    assert not SP.reaches_output(parse_arch("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"))


def test_every_cell_round_trips():
    for a in SP.all_cells():
        text = SP.format(a)
        assert parse_arch(text) == a == SP.parse(text)
        assert parse_arch(json.dumps(SP.to_json(a))) == a
        assert SP.decode(SP.encode(a)) == a
        assert parse_arch(" ".join(map(str, a.ops)), "nb201") == a
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = SP.sample(rng)
        m = SP.mutate(a, rng)
        assert sum(x != y for x, y in zip(a.ops, m.ops)) == 1


@pytest.mark.parametrize("text, msg", [
    ("|nor_conv_3x3~0|+|none~0|", "expected 3 nodes"),
    ("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_7x7'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "one edge from each of nodes 0..0"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|", "one edge from each of nodes 0..2"),
])
def test_malformed_cell_strings_are_one_line_errors(text, msg, capsys):
    with pytest.raises(SpaceError, match=msg):
        parse_arch(text)
    code, _, err = cli(["arch", "show", text], capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_arch_commands_and_plot(tmp_path, capsys):
    code, out, _ = cli(["arch", "sample", "--space", "nb201", "-n", "3", "--seed", "1"], capsys)
    assert code == 0 and len(out.splitlines()) == 3
    text = out.splitlines()[0]
    code, out, _ = cli(["arch", "show", text], capsys)
    assert code == 0 and json.loads(out.splitlines()[0])["cell"] == text
    assert out.splitlines()[1] == "canonical: " + SP.format(SP.canonical(SP.parse(text)))
    code, out, _ = cli(["plot", text, "-o", str(tmp_path / "cell.png")], capsys)
    assert code == 0 and (tmp_path / "cell.png").stat().st_size > 1000


# -- the table -----------------------------------------------------------------------------------------------

def _write(path, header, rows):
    path.write_text("\n".join([header] + rows) + "\n")
    return path


@pytest.fixture(scope="module")
def table_rows():
    text = TABLE.read_text().splitlines()
    return text[0], text[1:]


@pytest.mark.parametrize("case", ["missing", "columns", "cell", "duplicate", "task", "short", "binary"])
def test_bad_tables_are_one_line_errors(case, tmp_path, table_rows, capsys):
    header, rows = table_rows
    task, path = "cifar10", tmp_path / "t.csv"
    if case == "missing":
        expect = "does not exist"
    elif case == "columns":
        _write(path, header.replace("cifar10_test", "cifar10_tst"), rows)
        expect = "no column cifar10_test"
    elif case == "cell":
        _write(path, header, rows[:5] + [rows[5].replace("nor_conv_3x3", "conv9", 1).replace("none", "conv9", 1)]
               + rows[6:])
        expect = "line 7"
    elif case == "duplicate":
        _write(path, header, rows[:-1] + [rows[0]])
        expect = "appears twice"
    elif case == "task":
        cols = header.split(",")
        keep = [i for i, c in enumerate(cols) if not c.startswith("imagenet16")]
        _write(path, ",".join(cols[i] for i in keep), [",".join(r.split(",")[i] for i in keep) for r in rows])
        task, expect = "imagenet16", "no column imagenet16_valid"
    elif case == "short":
        _write(path, header, rows[:100])
        expect = "has 100 cells"
    else:
        path.write_bytes(bytes(range(256)) * 10)
        expect = "benchmark file"
    out = tmp_path / "run"
    args = FAST[:] + ["--output", str(out)]
    args[args.index("--benchmark") + 1] = str(path)
    args[args.index("--task") + 1] = task
    code, _, err = cli(args, capsys)
    assert code == 2 and expect in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # validated before the run folder is made


def test_official_file_needs_its_api_package(tmp_path, monkeypatch, capsys):
    official = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    official.write_bytes(b"not read without the package")
    for name in ("nats_bench", "nas_201_api"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    args = FAST[:] + ["--output", str(tmp_path / "run")]
    args[args.index("--benchmark") + 1] = str(official)
    code, _, err = cli(args, capsys)
    assert code == 2 and "pip install nats_bench" in err


def test_official_file_through_the_api(tmp_path, monkeypatch):
    """The adapter asks the NATS-Bench API for each index's cell string and 200-epoch accuracies."""
    cells = SP.all_cells()

    class FakeApi:
        def __len__(self):
            return len(cells)

        def arch(self, i):
            return SP.format(cells[i])

        def get_more_info(self, i, dataset, hp, is_random):
            assert hp == "200" and is_random is False
            return {"valid-accuracy": float(i % 97), "test-accuracy": float(i % 89) if dataset == "cifar10" else -1.0}

    fake = type(sys)("nats_bench")
    fake.create = lambda path, space, fast_mode, verbose: FakeApi()
    monkeypatch.setitem(sys.modules, "nats_bench", fake)
    official = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    official.mkdir()
    t = tabular.load_table(official, "cifar10")
    assert len(t) == 15625 and t.score(cells[100]) == 100 % 97 and t.test_accuracy(cells[100]) == 100 % 89


# -- the search ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["nao", "random", "rea"])
def test_search_spends_each_query_on_a_new_cell_and_reads_test_only_at_the_end(strategy, tmp_path, monkeypatch,
                                                                               capsys):
    out = tmp_path / strategy
    reads = []
    real = tabular.Table.test_accuracy

    def spy(self, arch):
        reads.append(len(lines(out / "pool.jsonl")))
        return real(self, arch)

    monkeypatch.setattr(tabular.Table, "test_accuracy", spy)
    code, stdout, err = cli(FAST + ["--strategy", strategy, "--output", str(out), "--budget", "16"], capsys)
    assert code == 0, err
    pool = lines(out / "pool.jsonl")
    assert [r["query"] for r in pool] == list(range(1, 17))
    assert len({r["canonical"] for r in pool}) == 16  # no query spent twice
    assert all(r["canonical"] == SP.format(SP.canonical(SP.parse(r["arch"]))) for r in pool)
    assert reads and set(reads) == {16}  # the test column only once the budget is spent
    table = tabular.load_table(TABLE, "cifar10")
    assert all(r["score"] == table.score(SP.parse(r["arch"])) for r in pool)
    best = json.loads((out / "best.json").read_text())
    top = max(pool, key=lambda r: r["score"])
    assert best["text"] == top["arch"] and best["test_accuracy"] == table.test_accuracy(SP.parse(top["arch"]))
    assert json.loads(stdout)["best"] == best["text"]
    origins = {r["origin"] for r in pool}
    assert origins <= {"random", strategy} and (strategy == "random" or strategy in origins)


def _spawn(args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nao_ws.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_and_resumed_tabular_search_equals_uninterrupted(tmp_path, capsys):
    args = FAST + ["--strategy", "nao", "--budget", "24", "--seed", "2"]
    ref = tmp_path / "ref"
    assert cli(args + ["--output", str(ref)], capsys)[0] == 0
    run = tmp_path / "killed"
    p = _spawn(args + ["--output", str(run)])
    kills = 0
    for wanted in (9, 17):  # after the random cells, and during the controller rounds
        end = time.time() + 120
        while p.poll() is None and time.time() < end and len(lines(run / "pool.jsonl") if (run / "pool.jsonl").exists()
                                                             else []) < wanted:
            time.sleep(0.02)
        if p.poll() is not None:
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        p = _spawn(["search", "--resume", str(run), "--no-progress"])
    assert p.wait() == 0, p.stderr.read()
    assert kills >= 1
    assert lines(run / "pool.jsonl") == lines(ref / "pool.jsonl")
    strip = lambda rs: [{k: v for k, v in r.items() if "seconds" not in k} for r in rs]  # noqa: E731
    assert strip(lines(run / "metrics.jsonl")) == strip(lines(ref / "metrics.jsonl"))
    assert json.loads((run / "best.json").read_text()) == json.loads((ref / "best.json").read_text())


def test_resume_restores_a_cut_pool_log(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(FAST + ["--strategy", "rea", "--budget", "12", "--output", str(out)], capsys)[0] == 0
    full = (out / "pool.jsonl").read_text()
    (out / "pool.jsonl").write_text(full[: len(full) // 2])  # cut mid-line
    assert cli(["search", "--resume", str(out), "--no-progress"], capsys)[0] == 0
    assert (out / "pool.jsonl").read_text() == full


def test_option_errors(tmp_path, capsys):
    for extra, msg in [(["--strategy", "bogus"], "unknown"), (["--budget", "0"], "--budget 0"),
                       (["--budget", "5000"], "4930"), (["--population", "3", "--tournament", "4", "--strategy", "rea"],
                                                        "--tournament 4")]:
        out = tmp_path / "x"
        code, _, err = cli(FAST + extra + ["--output", str(out)], capsys)
        assert code == 2 and msg in err, (extra, err)
        assert not out.exists()
