"""The arch commands through the real console entry point: outputs and one-line errors (exit 2)."""
import json
import subprocess
import sys

import pytest

from supernet.spaces import parse_arch

NAONET_B = "0 1 0 2 0 1 2 2 1 3 0 2 4 0 1 3 2 1 0 3 | 1 1 1 0 2 1 2 4 1 0 2 3 3 1 2 2 0 2 0 2"


def test_sample_is_reproducible_and_valid(capsys, cli):
    code, out1, _ = cli(["arch", "sample", "--space", "cnn", "-n", "5", "--seed", "3"], capsys)
    assert code == 0
    _, out2, _ = cli(["arch", "sample", "--space", "cnn", "-n", "5", "--seed", "3"], capsys)
    lines = out1.strip().splitlines()
    assert out1 == out2 and len(lines) == 5
    for line in lines:
        code, out, _ = cli(["arch", "show", line, "--space", "cnn"], capsys)
        assert code == 0 and json.loads(out.splitlines()[0])["space"] == "cnn"


def test_show_prints_json_and_canonical(capsys, tmp_path, cli):
    code, out, _ = cli(["arch", "show", NAONET_B], capsys)
    assert code == 0
    js, canon = out.strip().splitlines()
    assert json.loads(js)["normal"][0] == [0, "sep_conv_5x5", 0, "avg_pool_3x3"]
    p = tmp_path / "a.json"
    p.write_text(js)
    code, out2, _ = cli(["arch", "show", str(p)], capsys)  # the JSON file form reads back
    assert code == 0 and out2 == out
    code, out3, _ = cli(["arch", "show", canon.split(": ")[1]], capsys)  # canonical of canonical
    assert out3.strip().splitlines()[1] == canon


VALID40 = NAONET_B.replace("|", "").split()
BAD = [
    ("", "empty"),
    ("   ", "empty"),
    (" ".join(VALID40[:39]), "39 integers"),
    (" ".join(VALID40 + ["0"]), "41 integers"),
    (" ".join(["9"] + VALID40[1:]), "reads itself or a later node"),
    (" ".join(VALID40[:4] + ["3"] + VALID40[5:]), "reads itself or a later node"),  # node 1 reads node 1 (index 3)
    (" ".join(VALID40[:8] + ["5"] + VALID40[9:]), "reads itself or a later node"),  # node 2 reads a later node
    (" ".join(["-1"] + VALID40[1:]), "below 0"),
    (" ".join(VALID40[:1] + ["5"] + VALID40[2:]), "op 1 = 5 is out of range"),
    (" ".join(VALID40[:1] + ["x"] + VALID40[2:]), "'x' is not an integer"),
    (" ".join(VALID40[:1] + ["1.5"] + VALID40[2:]), "'1.5' is not an integer"),
    (" ".join(VALID40[:1] + ["+1"] + VALID40[2:]), "'+1' is not an integer"),  # int() reads these four
    (" ".join(VALID40[:1] + ["1_0"] + VALID40[2:]), "'1_0' is not an integer"),
    (" ".join(VALID40[:1] + ["\u0661"] + VALID40[2:]), "'\u0661' is not an integer"),  # Arabic-Indic one
    (" ".join(["\uff10"] + VALID40[1:]), "'\uff10' is not an integer"),  # full-width zero
    (" ".join(VALID40[:1] + ["\u20031"] + VALID40[2:]), "is not an integer"),  # an em space is no separator
    (",".join(VALID40[:3]) + ",," + ",".join(VALID40[3:]), "a comma with no integer"),
    ('{"space": "rnn", "space": "cnn-ws", "normal": [], "reduce": []}', "key \"space\" appears twice"),
    ('{"space": "nb201", "cell": NaN}', "NaN is not a JSON value"),
    ('{"space": "cnn-ws", "normal": [[0, "sep_conv_7x7", 1, "identity"]]', "malformed"),
    ('{"space": "cnn-ws", "normal": [[0, "sep_conv_7x7", 1, "identity"]], "reduce": []}', "unknown op name 'sep_conv_7x7'"),
    ('{"normal": [], "reduce": []}', "no 'space' field"),
    ('{"space": "lstm", "nodes": []}', "unknown space 'lstm'"),
    ('{"space": "rnn", "nodes": [[0, "relu"]]}', "expected 11"),
    ('{"space": "rnn", "nodes": [[0, "gelu"]]}', "unknown activation 'gelu'"),
    ('[1, 2, 3]', "got 3 integers"),  # a JSON list is the integer form in brackets
    ('[0, "a"]', "JSON list must hold the integers"),
    ("0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 9", "activation 9 out of range"),
    ("0 1 1 1 2 2 1 2 4 1 4 1 4 1 12 1 8 2 1 0 4 1", "reads node 12"),
    ("missing/arch.json", "does not exist"),
]


@pytest.mark.parametrize("text,needle", BAD)
def test_malformed_architectures_give_one_line_errors(text, needle, capsys, cli):
    code, out, err = cli(["arch", "show", "--", text], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_wrong_space_is_one_line(capsys, cli):
    code, _, err = cli(["arch", "show", NAONET_B, "--space", "rnn"], capsys)
    assert code == 2 and "expected 23" in err and len(err.strip().splitlines()) == 1


def test_usage_errors_are_one_line(capsys, cli):
    code, _, err = cli(["arch", "sample", "--space", "lstm"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'lstm' is not one of" in err


def test_console_script_exit_status():
    r = subprocess.run([sys.executable, "-m", "nao_ws", "arch", "show", "1 2 3"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


@pytest.mark.parametrize("arch", [NAONET_B, "0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 1"])
def test_plot_writes_the_cell_diagram(arch, tmp_path, capsys, cli):
    import matplotlib.image

    from nao_ws.plot import render

    out = tmp_path / "cells.png"
    code, printed, err = cli(["plot", arch, "-o", str(out)], capsys)
    assert code == 0, err
    assert printed.strip() == str(out)
    image = matplotlib.image.imread(out)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert image.std() > 0.05  # not a blank canvas
    tb = render(parse_arch(arch))
    assert tb.dtype.name == "uint8" and tb.shape[2] == 3  # the same drawing TensorBoard receives
