"""Property-based fuzzing of the command line (issues 16 and 27): architecture strings, architecture JSON and
numeric options of `arch show`, `arch sample`, `train --dry-run` and `search`; inputs that say a thing twice or
step outside their grammar (JSON keys and config options given twice, integers in other spellings, NAS-Bench-201
cell strings, benchmark tables with a cell or an index twice). Every generated input either succeeds
(exit status 0) or is a one-line error with exit status 2; never a traceback. A `search` that fails has
created nothing, and one that passes reaches the search loop (stubbed here: its validation is what is under
test) with a valid config. Bounded to well under a minute in all."""
import copy
import dataclasses
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from nao_ws.config.options import field_types, flag_name
from nao_ws.search import options as search_options
from nao_ws.train.options import CnnTrainConfig, RnnTrainConfig
from supernet.spaces import get_space

FUZZ = settings(max_examples=int(os.environ.get("NAO_WS_FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def assert_clean(code: int, err: str, allow=("run folder: ",)) -> None:
    lines = [line for line in err.strip().splitlines() if not line.startswith(allow)]
    if code == 0:
        assert not any(line.startswith("error") for line in lines), err
        return
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err


# -- architectures --------------------------------------------------------------------------------------------

SAMPLES = [get_space(name).format(get_space(name).sample(np.random.default_rng(i)))
           for name in ("cnn-ws", "cnn", "rnn") for i in range(3)]
hostile_int = st.one_of(st.integers(-3, 12), st.sampled_from([2**31, 2**63, 10**30, -(10**20)]))
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def arch_strings(draw):
    """A sampled architecture with some tokens replaced, dropped or repeated, other separators, or junk."""
    tokens = draw(st.sampled_from(SAMPLES)).replace("|", " | ").split()
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        tokens[i:i + 1] = draw(st.sampled_from([[], [tokens[i]] * 2, [str(draw(hostile_int))], [draw(text)],
                                                ["1.5"], ["x"], ["|"]]))
    sep = draw(st.sampled_from([" ", ",", ", ", "\t", "  "]))
    return draw(st.one_of(st.just(sep.join(tokens)), text, st.just("[" + ",".join(tokens) + "]")))


json_leaf = st.one_of(st.none(), st.booleans(), hostile_int, st.floats(allow_nan=False), text)
json_any = st.recursive(json_leaf, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                          st.dictionaries(text, kids, max_size=4)), max_leaves=20)


SAMPLE_JSON = [get_space(name).to_json(get_space(name).sample(np.random.default_rng(i)))
               for name in ("cnn-ws", "cnn", "rnn") for i in range(2)]


@st.composite
def arch_json(draw):
    """The JSON form of a sampled architecture with values replaced by anything JSON can hold."""
    obj = copy.deepcopy(draw(st.sampled_from(SAMPLE_JSON)))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(obj) + ["arch", "extra"]))
        if key in obj and isinstance(obj[key], list) and obj[key] and draw(st.booleans()):
            row = draw(st.integers(0, len(obj[key]) - 1))
            node = obj[key][row]
            if isinstance(node, list) and node:
                node[draw(st.integers(0, len(node) - 1))] = draw(json_any)
            else:
                obj[key][row] = draw(json_any)
        else:
            obj[key] = draw(json_any)
    return json.dumps(draw(st.one_of(st.just(obj), st.just({"arch": obj}), json_any)))


@FUZZ
@given(arch=st.one_of(arch_strings(), arch_json()), space=st.sampled_from([None, "cnn-ws", "cnn", "rnn"]),
       as_file=st.booleans())
def test_arch_show(arch, space, as_file, cli):
    with tempfile.TemporaryDirectory() as tmp:
        if as_file:
            path = Path(tmp) / "arch.json"
            path.write_text(arch)
            arch = str(path)
        code, out, err = cli(["arch", "show", *(["--space", space] if space else []), "--", arch])
    assert_clean(code, err)
    if code == 0:
        assert json.loads(out.splitlines()[0])["space"] in ("cnn-ws", "cnn", "rnn")


@FUZZ
@given(space=st.sampled_from(["cnn-ws", "cnn", "rnn", "nb201"]), seeds=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       other_space=st.sampled_from([None, "cnn-ws", "rnn", "nb201"]))
def test_a_best_json_that_says_two_things(space, seeds, other_space, cli):
    """A best.json names its architecture twice (``arch``, ``text``) and its space: read only if they agree."""
    sp = get_space(space)
    a, b = (sp.sample(np.random.default_rng(i)) for i in seeds)
    wrapper = {"arch": sp.to_json(a), "text": sp.format(b), "space": other_space or space}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best.json"
        path.write_text(json.dumps(wrapper))
        code, _, err = cli(["arch", "show", path])
    assert_clean(code, err)
    assert (code == 0) == (a == b and other_space in (None, space)), err


@FUZZ
@given(space=st.sampled_from(["cnn-ws", "cnn", "rnn"]), n=st.integers(-2, 5), seed=hostile_int,
       unique=st.booleans())
def test_arch_sample(space, n, seed, unique, cli):
    code, out, err = cli(["arch", "sample", "--space", space, "-n", str(n), "--seed", str(seed),
                          "--unique" if unique else "--no-unique"])
    assert_clean(code, err)
    assert code != 0 or len(out.splitlines()) == n


# -- numeric options ----------------------------------------------------------------------------------------------

hostile_number = st.one_of(
    st.sampled_from(["0", "-1", "1", "2", "3", "8", "0.5", "1.0", "1.5", "-0.0", "1e-9", "nan", "inf", "-inf",
                     str(2**31), str(2**64), "1e400", "abc", "", "1_0", "+3", " 4", "\u0663", "\uff12.5"]),
    st.integers(-5, 600).map(str),
    st.floats(-2, 2, allow_nan=False).map(repr),
)
SIZE_CAPS = {"layers": 40, "rerank_layers": 40}  # valid, but building more cells only takes long


def ranges(*classes) -> dict:
    """Field name -> (its declared range, int?) over the numeric fields of ``classes``."""
    out = {}
    for cls in classes:
        types = field_types(cls)
        for f in dataclasses.fields(cls):
            if types[f.name] in (int, float):
                out[f.name] = (f.metadata["within"], types[f.name] is int)
    return out


TRAIN_RANGES = ranges(CnnTrainConfig, RnnTrainConfig)
SEARCH_RANGES = ranges(*search_options.CONFIGS)


@st.composite
def in_range(draw, name: str, limits) -> str:
    """A value the option's own range admits (so that combinations and later checks get exercised too)."""
    within, is_int = limits[name]
    lo = within.lo if within.lo is not None else 0
    hi = min(within.hi if within.hi is not None else lo + 64, SIZE_CAPS.get(name, math.inf))
    value = draw(st.integers(math.ceil(lo), math.floor(hi)) if is_int else st.floats(lo, hi))
    return str(value) if value in within else str(within.lo if within.lo is not None else 1)


@st.composite
def numeric_flags(draw, limits):
    flags = []
    for name in draw(st.lists(st.sampled_from(sorted(limits)), min_size=1, max_size=4, unique=True)):
        value = draw(st.one_of(in_range(name, limits), hostile_number))
        if name in SIZE_CAPS:
            try:
                if float(value) > SIZE_CAPS[name]:
                    value = str(SIZE_CAPS[name])
            except ValueError:
                pass
        flags.append(f"{flag_name(name)}={value}")
    return flags


TRAIN_TASKS = [["--task", "cifar10"], ["--task", "cifar10", "--space", "cnn"], ["--task", "ptb", "--data-dir", "PTB"]]


@FUZZ
@given(task=st.sampled_from(TRAIN_TASKS), preset=st.sampled_from(["paper", "smoke"]),
       flags=numeric_flags(TRAIN_RANGES), arch=st.one_of(st.none(), arch_strings()))
def test_train_dry_run(task, preset, flags, arch, cli, data):
    task = [str(data("ptb-tiny")) if a == "PTB" else a for a in task]
    args = ["train", *task, "--preset", preset, "--dry-run", "--json", *flags]
    code, out, err = cli(args + ([f"--arch={arch}"] if arch is not None else []))
    assert_clean(code, err)
    if code == 0:
        assert json.loads(out.strip().splitlines()[-1])["params"] > 0


SEARCH_TASKS = [["--task", "cifar10"], ["--task", "cifar10", "--space", "cnn"], ["--task", "ptb", "--data-dir", "PTB"],
                ["--task", "cifar10", "--space", "nb201"]]


@pytest.fixture
def stubbed_search(monkeypatch):
    """The driver replaced by a recorder of the config it was given: validation is what is fuzzed."""
    from nao_ws.search import driver

    calls = []

    def recorder(cfg, run_dir, resume=False, progress=True, source=None):
        calls.append(cfg)
        return {"text": "", "score": 0.0}

    monkeypatch.setattr(driver, "run", recorder)
    return calls


@FUZZ
@given(task=st.sampled_from(SEARCH_TASKS), strategy=st.sampled_from(["nao", "random", "rea"]),
       flags=numeric_flags(SEARCH_RANGES))
def test_search_validates_before_creating_anything(stubbed_search, task, strategy, flags, cli, data):
    task = [str(data("ptb-tiny")) if a == "PTB" else a for a in task]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        before = len(stubbed_search)
        code, _, err = cli(["search", *task, "--strategy", strategy, "--preset", "smoke", *flags, "--output", out,
                            "--no-progress"])
        assert_clean(code, err)
        if code == 0:
            assert len(stubbed_search) == before + 1 and (out / "config.json").is_file()
            cfg = stubbed_search[-1]
            for name, (within, _) in ranges(type(cfg)).items():  # its own class's: --grad-clip 0 is "none" on
                value = getattr(cfg, name)                        # image supernets, refused on rnn
                assert value in within, (name, value)
                assert not isinstance(value, float) or math.isfinite(value)
        else:
            assert len(stubbed_search) == before and not out.exists()


# -- benchmark tables -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table_rows(data):
    return [line.split(",") for line in data("nb201", "nb201-cifar10-12epoch.csv").read_text().splitlines()]


@settings(max_examples=int(os.environ.get("NAO_WS_FUZZ_EXAMPLES", "200")) // 8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(row=st.integers(1, 15625), column=st.sampled_from(["cifar10_valid", "cifar10_test"]),
       value=st.one_of(st.floats(-1e3, 1e3), st.sampled_from(["nan", "inf", "-0.0", "100.0001", "1e2", "", "12%"]),
                       text.filter(lambda t: not any(c in t for c in ',"\r\n'))))
def test_a_table_value_is_a_percentage_or_a_one_line_error(stubbed_search, table_rows, row, column, value, cli):
    """Any one value of the table replaced: a number from 0 to 100 in digits 0-9 is searched, anything else is
    refused in one line naming its line, before a run folder exists."""
    rows = copy.deepcopy(table_rows)
    rows[row][rows[0].index(column)] = str(value)
    decimal = re.fullmatch(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", str(value))  # not float()'s '1_0'
    number = float(str(value)) if decimal else math.nan
    with tempfile.TemporaryDirectory() as tmp:
        table, out = Path(tmp) / "t.csv", Path(tmp) / "run"
        table.write_text("".join(",".join(r) + "\n" for r in rows))
        code, _, err = cli(["search", "--task", "cifar10", "--space", "nb201", "--benchmark", table, "--budget", "4",
                            "--strategy", "random", "--output", out, "--no-progress"])
        assert_clean(code, err)
        assert (code == 0) == (math.isfinite(number) and 0 <= number <= 100), (value, err)
        assert code == 0 or (f"line {row + 1}" in err and not out.exists()), err


# -- said twice, or outside the grammar (issue 27) -------------------------------------------------------------

SPELLINGS = {  # other spellings of a non-negative integer that int() reads as the same number
    "plus": lambda v: "+" + v,
    "underscore": lambda v: v[0] + "_" + v[1:] if len(v) > 1 else "0_" + v,
    "Arabic-Indic": lambda v: v.translate({48 + d: 0x660 + d for d in range(10)}),
    "Devanagari": lambda v: v.translate({48 + d: 0x966 + d for d in range(10)}),
    "full-width": lambda v: v.translate({48 + d: 0xFF10 + d for d in range(10)}),
    "fraction": lambda v: v + ".0",
}


@FUZZ
@given(space=st.sampled_from(["cnn-ws", "cnn", "rnn"]), seed=st.integers(0, 99), position=st.integers(0, 39),
       spelling=st.sampled_from(sorted(SPELLINGS)))
def test_an_integer_spelled_another_way_is_refused(space, seed, position, spelling, cli):
    """The text form admits digits 0-9 only: the same number in another spelling is one line naming it."""
    tokens = get_space(space).format(get_space(space).sample(np.random.default_rng(seed))).split()
    numbers = [i for i, t in enumerate(tokens) if t != "|"]
    i = numbers[position % len(numbers)]
    tokens[i] = SPELLINGS[spelling](tokens[i])
    code, _, err = cli(["arch", "show", "--space", space, "--", " ".join(tokens)])
    assert_clean(code, err)
    assert code == 2 and f"'{tokens[i]}' is not an integer" in err, err


NB201 = get_space("nb201")
NB201_CELLS = {NB201.format(a) for a in NB201.all_cells()}  # the whole grammar: every cell's one string


@st.composite
def nb201_strings(draw):
    """A cell string with characters inserted, deleted or an edge repeated: spaces, pipes, signs, digits."""
    text = NB201.format(NB201.sample(np.random.default_rng(draw(st.integers(0, 999)))))
    for _ in range(draw(st.integers(1, 3))):
        marks = [0, len(text)] + [j + 1 for j, c in enumerate(text) if c in "~|"]  # the ends, after '~' or a pipe
        i = draw(st.one_of(st.integers(0, len(text)), st.sampled_from(marks)))
        edit = draw(st.sampled_from(["insert", "delete", "repeat edge"]))
        if edit == "insert":
            text = text[:i] + draw(st.sampled_from([" ", "\t", "|", "+", "~", "0", "1", "3", "_", "\u0661", "-"])) \
                + text[i:]
        elif edit == "delete" and text:
            text = text[:i] + text[i + 1:]
        else:
            start = text.rfind("|", 0, max(i, 1))
            end = text.find("|", start + 1)
            if start >= 0 and end > start:
                text = text[:end] + text[start:end] + text[end:]
    return text


@FUZZ
@given(text=nb201_strings(), form=st.sampled_from(["text", "json", "file"]))
@example(text="|none~0|+|skip_connect~0|none~01|+|none~0|none~1|nor_conv_3x3~2|", form="text")
@example(text="|none~0|+|skip_connect~0|none~+1|+|none~0|none~1|nor_conv_3x3~2|", form="text")
@example(text="|none~0| +|skip_connect~0|none~1|+|none~0|none~1|nor_conv_3x3~2|", form="text")
@example(text="|none~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_3x3~2||", form="text")
@example(text="|none~0|+|skip_connect~0|none~0|+|none~0|none~1|nor_conv_3x3~2|", form="json")
@example(text="|none~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_3x3~2| ", form="json")
@example(text="|none~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_3x3~2|\n", form="file")
def test_nb201_cell_strings_are_read_exactly(text, form, cli):
    """A cell string is read if and only if it is one of the 15,625 cells' strings, whatever its form."""
    arg = text if form == "text" else json.dumps({"space": "nb201", "cell": text})
    with tempfile.TemporaryDirectory() as tmp:
        if form == "file":
            (Path(tmp) / "arch.json").write_text(arg)
            arg = str(Path(tmp) / "arch.json")
        code, out, err = cli(["arch", "show", "--", arg])
    assert_clean(code, err)
    valid = (text.strip() if form == "text" else text) in NB201_CELLS  # the command line's own spaces may go
    assert (code == 0) == valid, (text, err)


def _object_text(items: list) -> str:
    """A JSON object written from (key, value) pairs, a key possibly twice (which json.dumps cannot write)."""
    return "{" + ", ".join(f"{json.dumps(k)}: {v if isinstance(v, str) and v.startswith('{') else json.dumps(v)}"
                           for k, v in items) + "}"


@FUZZ
@given(sample=st.sampled_from(SAMPLE_JSON), key=st.integers(0, 9), where=st.integers(0, 9),
       same=st.booleans(), wrapped=st.booleans(), as_file=st.booleans())
def test_architecture_json_with_a_key_twice_is_refused(sample, key, where, same, wrapped, as_file, cli):
    """json.loads keeps the last of two equal keys; an architecture (or a best.json) that names one twice is a
    one-line error whether or not both say the same."""
    items = list(sample.items())
    k, v = items[key % len(items)]
    other = v if same else ("rnn" if v != "rnn" else "cnn")
    items.insert(where % (len(items) + 1), (k, other))
    text = _object_text(items)
    if wrapped:
        text = _object_text([("arch", text), ("space", sample["space"])])
    with tempfile.TemporaryDirectory() as tmp:
        if as_file:
            (Path(tmp) / "best.json").write_text(text)
            text = str(Path(tmp) / "best.json")
        code, _, err = cli(["arch", "show", "--", text])
    assert_clean(code, err)
    assert code == 2 and f"key {json.dumps(k)} appears twice" in err, err


CONFIG_VALUES = {"lr": [0.1, 0.05], "epochs": [2, 3], "batch_size": [16, 32], "seed": [0, 1], "momentum": [0.9, 0.8]}


@settings(max_examples=max(int(os.environ.get("NAO_WS_FUZZ_EXAMPLES", "200")) // 8, 1), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.sampled_from(sorted(CONFIG_VALUES)), min_size=1, max_size=4, unique=True),
       twice=st.integers(0, 3), spelling=st.sampled_from(["same", "dash"]), second=st.integers(0, 1),
       suffix=st.sampled_from([".json", ".yaml"]))
def test_a_config_file_setting_an_option_twice_is_refused(keys, twice, spelling, second, suffix, cli):
    """JSON and YAML loaders keep the last of two equal keys, and 'batch-size' is 'batch_size': a --config file
    that sets an option twice is one line, and nothing is written."""
    items = [(k, CONFIG_VALUES[k][0]) for k in keys]
    k = keys[twice % len(keys)]
    items.append((k.replace("_", "-") if spelling == "dash" else k, CONFIG_VALUES[k][second]))
    text = _object_text(items) if suffix == ".json" else "".join(f"{a}: {b}\n" for a, b in items)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"c{suffix}"
        path.write_text(text)
        code, _, err = cli(["train", "--task", "cifar10", "--preset", "smoke", "--dry-run", "--config", path,
                            "--output", Path(tmp) / "run"])
        assert sorted(p.name for p in Path(tmp).iterdir()) == [path.name]
    assert_clean(code, err)
    assert code == 2 and "twice" in err, (text, err)


@settings(max_examples=max(int(os.environ.get("NAO_WS_FUZZ_EXAMPLES", "200")) // 16, 1), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pair=st.lists(st.integers(1, 15625), min_size=2, max_size=2, unique=True),
       what=st.sampled_from(["row", "cell, other accuracies", "index"]))
def test_a_table_that_says_a_cell_twice_is_refused(stubbed_search, table_rows, pair, what, cli):
    """A row copied over another (whole, or its cell with other accuracies), or an index moved to another row:
    the table contradicts itself, which is one line naming the later line, before a run folder exists."""
    rows = copy.deepcopy(table_rows)
    src, dst = pair
    if what == "row":
        rows[dst] = list(rows[src])
    elif what == "index":
        rows[dst][0] = rows[src][0]
    else:
        rows[dst][:2] = rows[src][:2]  # the index goes with its cell
        rows[dst][rows[0].index("cifar10_valid")] = "1.5"
    with tempfile.TemporaryDirectory() as tmp:
        table, out = Path(tmp) / "t.csv", Path(tmp) / "run"
        table.write_text("".join(",".join(r) + "\n" for r in rows))
        code, _, err = cli(["search", "--task", "cifar10", "--space", "nb201", "--benchmark", table, "--budget", "4",
                            "--strategy", "random", "--output", out, "--no-progress"])
        assert not out.exists()
    assert_clean(code, err)
    line = (dst if what == "index" else max(pair)) + 1
    assert code == 2 and f"line {line}" in err and ("appears twice" in err or "disagrees" in err), err
