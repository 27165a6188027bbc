"""The NAS-Bench-201 space and its table (reference §8): canonical classes, round trips, tables read with one-line
errors, the official file through its API package, and a search that spends each query on a new cell and reads
the test column only at the end (every strategy's run and resume: the search matrix in test_search.py)."""
import gzip
import json
import sys

import numpy as np
import pytest

from nao_ws.search.sources import table as tabular
from supernet.spaces import NB201_EDGES, NB201_OPS, SpaceError, get_space, parse_arch

SP = get_space("nb201")


@pytest.fixture(scope="module")
def table(data):
    return data("nb201", "nb201-cifar10-12epoch.csv")


@pytest.fixture(scope="module")
def fast(table):
    """A smoke search on the table (without --output)."""
    return ["search", "--task", "cifar10", "--space", "nb201", "--benchmark", str(table), "--preset", "smoke",
            "--no-progress"]


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
    ("|none~0|+|none~0|none~01|+|none~0|none~1|none~2|", "must read '|op~i|...|'"),  # one digit names a node
    ("|none~0|+|none~0|none~+1|+|none~0|none~1|none~2|", "expected 3 nodes"),
    ("|none~0|+|none~0|none~\u0661|+|none~0|none~1|none~2|", "must read '|op~i|...|'"),
    ("|none~0| +|none~0|none~1|+|none~0|none~1|none~2|", "must read '|op~i|...|'"),
    ("|none~0|+|none~0||none~1|+|none~0|none~1|none~2|", "must read '|op~i|...|'"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "one edge from each of nodes 0..1"),
    ('{"space": "nb201", "cell": " |none~0|+|none~0|none~1|+|none~0|none~1|none~2|"}', "must read '|op~i|...|'"),
    ('{"space": "nb201", "cell": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "cell": "|none~0|+|none~0|'
     'none~1|+|none~0|none~1|skip_connect~2|"}', "key \"cell\" appears twice"),
])
def test_malformed_cell_strings_are_one_line_errors(text, msg, cli, capsys):
    with pytest.raises(SpaceError, match=msg):
        parse_arch(text)
    code, _, err = cli(["arch", "show", text], capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_arch_commands_and_plot(tmp_path, cli, capsys):
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
def table_rows(table):
    text = table.read_text().splitlines()
    return text[0], text[1:]


@pytest.mark.parametrize("case", ["missing", "name", "columns", "cell", "duplicate", "task", "short", "binary",
                                  "gzip"])
def test_bad_tables_are_one_line_errors(case, tmp_path, table_rows, fast, cli, capsys):
    header, rows = table_rows
    task, path = "cifar10", tmp_path / "t.csv"
    if case == "missing":
        expect = "does not exist"
    elif case == "name":
        path, expect = "nb201-200epoch", "built-in tables: nb201-12epoch"
    elif case == "gzip":
        path = tmp_path / "t.csv.gz"
        path.write_bytes(gzip.compress("\n".join([header] + rows).encode())[:-100])  # cut short
        expect = "not a text CSV file"
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
    args = fast[:] + ["--output", str(out)]
    args[args.index("--benchmark") + 1] = str(path)
    args[args.index("--task") + 1] = task
    code, _, err = cli(args, capsys)
    assert code == 2 and expect in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # validated before the run folder is made


def _swap_index(rows):
    first, second = rows[0].split(","), rows[1].split(",")
    first[0], second[0] = second[0], first[0]
    return [",".join(first), ",".join(second)] + rows[2:]


def _cell(rows, i, column, value, header):
    fields = rows[i].split(",")
    fields[header.split(",").index(column)] = value
    return rows[:i] + [",".join(fields)] + rows[i + 1:]


SAID_TWICE_OR_OFF_GRAMMAR = {  # each was read silently before (float() and int() take '5_0', '+1', '٥', ' 5')
    "index of another cell": (lambda h, r: (h, _swap_index(r)), "line 2: index 1 disagrees with the benchmark's"),
    "index 1_0": (lambda h, r: (h, _cell(r, 9, "index", "1_0", h)), "line 11: index must be an integer"),
    "index +9": (lambda h, r: (h, _cell(r, 9, "index", "+9", h)), "line 11: index must be an integer"),
    "accuracy 5_0": (lambda h, r: (h, _cell(r, 9, "cifar10_valid", "5_0", h)), "line 11: cifar10_valid must be"),
    "accuracy in Arabic-Indic digits": (lambda h, r: (h, _cell(r, 9, "cifar10_test", "\u0665", h)),
                                        "line 11: cifar10_test must be a number"),
    "accuracy after a space": (lambda h, r: (h, _cell(r, 9, "cifar10_valid", " 50", h)), "line 11"),
    "cell with a space": (lambda h, r: (h, _cell(r, 9, "cellstr", r[9].split(",")[1] + " ", h)), "line 11: nb201"),
    "column twice": (lambda h, r: (h.replace("cifar100_valid", "cifar10_valid"), r), "column cifar10_valid twice"),
    "unknown column": (lambda h, r: (h + ",notes", [x + ",ok" for x in r]), "a column 'notes'"),
    "extra value": (lambda h, r: (h, r[:3] + [r[3] + ",1"] + r[4:]), "line 5: 9 values under 8 columns"),
    "same cell, same accuracies": (lambda h, r: (h, r[:-1] + [r[0]]), "appears twice"),
    "same cell, other accuracies": (lambda h, r: (h, r[:-1] + [_cell(r, 0, "cifar10_valid", "1.5", h)[0]]),
                                    "appears twice"),
}


@pytest.mark.parametrize("case", sorted(SAID_TWICE_OR_OFF_GRAMMAR))
def test_a_table_off_its_grammar_or_contradicting_itself_is_refused(case, tmp_path, table_rows, fast, cli, capsys):
    edit, expect = SAID_TWICE_OR_OFF_GRAMMAR[case]
    path, out = _write(tmp_path / "t.csv", *edit(*table_rows)), tmp_path / "run"
    args = fast[:] + ["--output", str(out)]
    args[args.index("--benchmark") + 1] = str(path)
    code, _, err = cli(args, capsys)
    assert code == 2 and expect in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_built_in_table_is_the_real_data_table(data):
    real = data("nb201", "nb201-cifar10-12epoch.csv", shipped=False)
    for task in tabular.TABLE_TASKS:
        built_in, csv = tabular.load_table("nb201-12epoch", task), tabular.load_table(real, task)
        assert built_in.valid == csv.valid and built_in._test == csv._test and built_in.source == "nb201-12epoch"


def test_built_in_table_by_name_from_any_folder(tmp_path, monkeypatch, fast, cli, capsys, jsonl):
    """The name needs no file where the search runs; the gzipped CSV it names works as a path too."""
    monkeypatch.chdir(tmp_path)
    args = fast[:] + ["--budget", "12", "--output", "run"]
    args[args.index("--benchmark") + 1] = "nb201-12epoch"
    code, _, err = cli(args, capsys)
    assert code == 0, err
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    table = tabular.load_table(tabular.BUILT_IN["nb201-12epoch"], "cifar10")
    assert best["benchmark"] == "nb201-12epoch"
    assert best["test_accuracy"] == table.test_accuracy(parse_arch(best["text"]))
    assert best["valid_accuracy"] == max(table.score(parse_arch(r["arch"])) for r in jsonl(tmp_path / "run/pool.jsonl"))


def test_official_file_needs_its_api_package(tmp_path, monkeypatch, fast, cli, capsys):
    official = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    official.write_bytes(b"not read without the package")
    for name in ("nats_bench", "nas_201_api"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    args = fast[:] + ["--output", str(tmp_path / "run")]
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
                                                                               fast, table, cli, capsys, jsonl):
    out = tmp_path / strategy
    reads = []
    real = tabular.Table.test_accuracy

    def spy(self, arch):
        reads.append(len(jsonl(out / "pool.jsonl")))
        return real(self, arch)

    monkeypatch.setattr(tabular.Table, "test_accuracy", spy)
    code, stdout, err = cli(fast + ["--strategy", strategy, "--output", out, "--budget", "16"], capsys)
    assert code == 0, err
    pool = jsonl(out / "pool.jsonl")
    assert [r["query"] for r in pool] == list(range(1, 17))
    assert len({r["canonical"] for r in pool}) == 16  # no query spent twice
    assert reads and set(reads) == {16}  # the test column only once the budget is spent
    best = json.loads((out / "best.json").read_text())
    assert json.loads(stdout)["best"] == best["text"] and json.loads(stdout)["test_accuracy"] == best["test_accuracy"]


def test_a_round_of_nao_grows_with_what_it_has_seen(fast, cli, tmp_path, jsonl):
    """--per-round 4 and --round-fraction 0.25: rounds of 4 until 16 queries, then a quarter of those so far."""
    out = tmp_path / "run"
    assert cli(fast + ["--budget", "40", "--initial", "8", "--per-round", "4", "--round-fraction", "0.25",
                       "--output", out])[0] == 0
    sizes = [m["scored"] for m in jsonl(out / "metrics.jsonl") if m["phase"] == "score"]
    assert sizes == [8, 4, 4, 4, 5, 6, 7, 2]
