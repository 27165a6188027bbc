"""Property-based fuzzing of the command line (issue 16): architecture strings, architecture JSON and numeric
options of `arch show`, `arch sample`, `train --dry-run` and `search`. Every generated input either succeeds
(exit status 0) or is a one-line error with exit status 2; never a traceback. A `search` that fails has
created nothing, and one that passes reaches the search loop (stubbed here: its validation is what is under
test) with a valid config. Bounded to well under a minute in all."""
import contextlib
import copy
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from nao_ws import config, search as ws, standalone, train_cnn, train_rnn
from nao_ws.cli import main
from supernet.spaces import get_space

PTB_TINY = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb-tiny")
FUZZ = settings(max_examples=int(os.environ.get("NAO_WS_FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def run(args) -> tuple[int, str, str]:
    """The real entry point in this process; any exception but SystemExit propagates and fails the test."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


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
def test_arch_show(arch, space, as_file):
    with tempfile.TemporaryDirectory() as tmp:
        if as_file:
            path = Path(tmp) / "arch.json"
            path.write_text(arch)
            arch = str(path)
        code, out, err = run(["arch", "show", *(["--space", space] if space else []), "--", arch])
    assert_clean(code, err)
    if code == 0:
        assert json.loads(out.splitlines()[0])["space"] in ("cnn-ws", "cnn", "rnn")


@FUZZ
@given(space=st.sampled_from(["cnn-ws", "cnn", "rnn"]), n=st.integers(-2, 5), seed=hostile_int,
       unique=st.booleans())
def test_arch_sample(space, n, seed, unique):
    code, out, err = run(["arch", "sample", "--space", space, "-n", str(n), "--seed", str(seed),
                          "--unique" if unique else "--no-unique"])
    assert_clean(code, err)
    assert code != 0 or len(out.splitlines()) == n


# -- numeric options ----------------------------------------------------------------------------------------------

hostile_number = st.one_of(
    st.sampled_from(["0", "-1", "1", "2", "3", "8", "0.5", "1.0", "1.5", "-0.0", "1e-9", "nan", "inf", "-inf",
                     str(2**31), str(2**64), "1e400", "abc", ""]),
    st.integers(-5, 600).map(str),
    st.floats(-2, 2, allow_nan=False).map(repr),
)
SIZE_CAPS = {"layers": 40, "rerank_layers": 40}  # valid, but building more cells only takes long


def numeric_fields(*classes) -> list[str]:
    names = set()
    for cls in classes:
        names |= {n for n, t in config._field_types(cls).items() if t in (int, float)}
    return sorted(names)


INT_FIELDS = {n for cls in (ws.CnnSearchConfig, ws.RnnSearchConfig, standalone.Config, train_cnn.Config,
                            train_rnn.Config) for n, t in config._field_types(cls).items() if t is int}


@st.composite
def in_range(draw, name: str) -> str:
    """A value the option's own range admits (so that combinations and later checks get exercised too)."""
    limits, is_int = config.RANGES[name], name in INT_FIELDS
    lo = limits.lo if limits.lo is not None else 0
    hi = min(limits.hi if limits.hi is not None else lo + 64, SIZE_CAPS.get(name, math.inf))
    value = draw(st.integers(math.ceil(lo), math.floor(hi)) if is_int else st.floats(lo, hi))
    return str(value) if value in limits else str(limits.lo if limits.lo is not None else 1)


@st.composite
def numeric_flags(draw, fields):
    flags = []
    for name in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=4, unique=True)):
        value = draw(st.one_of(in_range(name), hostile_number))
        if name in SIZE_CAPS:
            try:
                if float(value) > SIZE_CAPS[name]:
                    value = str(SIZE_CAPS[name])
            except ValueError:
                pass
        flags.append(f"{config.flag_name(name)}={value}")
    return flags


TRAIN_TASKS = [["--task", "cifar10"], ["--task", "cifar10", "--space", "cnn"], ["--task", "ptb", "--data-dir", PTB_TINY]]


@FUZZ
@given(task=st.sampled_from(TRAIN_TASKS), preset=st.sampled_from(["paper", "smoke"]),
       flags=numeric_flags(numeric_fields(train_cnn.Config, train_rnn.Config)),
       arch=st.one_of(st.none(), arch_strings()))
def test_train_dry_run(task, preset, flags, arch):
    args = ["train", *task, "--preset", preset, "--dry-run", "--json", *flags]
    code, out, err = run(args + ([f"--arch={arch}"] if arch is not None else []))
    assert_clean(code, err)
    if code == 0:
        assert json.loads(out.strip().splitlines()[-1])["params"] > 0


SEARCH_TASKS = [["--task", "cifar10"], ["--task", "cifar10", "--space", "cnn"], ["--task", "ptb", "--data-dir", PTB_TINY]]


@pytest.fixture
def stubbed_search(monkeypatch):
    """The loops replaced by a recorder of the config they were given: validation is what is fuzzed."""
    calls = []

    def weight_sharing(cfg, run_dir, resume=False, progress=True):
        calls.append(cfg)
        return {"text": "", "inherited": {"score": 0.0}, "rerank": None}

    def standalone_run(cfg, run_dir, monitor, resume=False):
        calls.append(cfg)
        return {"text": "", "score": 0.0}

    monkeypatch.setattr(ws, "run", weight_sharing)
    monkeypatch.setattr(standalone, "run", standalone_run)
    return calls


@FUZZ
@given(task=st.sampled_from(SEARCH_TASKS), flags=numeric_flags(numeric_fields(
    ws.CnnSearchConfig, ws.RnnSearchConfig, standalone.Config)))
def test_search_validates_before_creating_anything(stubbed_search, task, flags):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        before = len(stubbed_search)
        code, _, err = run(["search", *task, "--preset", "smoke", *flags, "--output", str(out), "--no-progress"])
        assert_clean(code, err)
        if code == 0:
            assert len(stubbed_search) == before + 1 and (out / "config.json").is_file()
            cfg = stubbed_search[-1]
            for name, limits in config.RANGES.items():
                value = getattr(cfg, name, None)
                assert value is None or value in limits, (name, value)
                assert not isinstance(value, float) or math.isfinite(value)
        else:
            assert len(stubbed_search) == before and not out.exists()
