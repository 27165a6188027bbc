"""The suite's settings, runners and fixtures; test modules import nothing from each other.

One intra-op thread, for this process and the CLI subprocesses tests start: with two threads on a busy 2-core
machine, small CPU kernels (batch norm, depthwise conv, the controller's step-by-step LSTM) ran 10-200x slower
from OpenMP spin-waiting; one thread keeps the suite's run time predictable wherever it runs.

Real data (full PTB, its excerpt, CIFAR-10 npz files, the NAS-Bench-201 table) comes from one folder:
``$NAO_WS_TEST_DATA``, by default ``../shared/data`` beside the repository when that exists. A test that needs a
file of it asks the ``data`` fixture. Without the folder (a fresh clone), a file the package ships stands in
(the NAS-Bench-201 table); any other skips the test with one line saying how to get it.
"""
import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)

import contextlib  # noqa: E402
import gzip  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DATA = Path(os.environ["NAO_WS_TEST_DATA"]) if os.environ.get("NAO_WS_TEST_DATA") else \
    SHARED if SHARED.is_dir() else None
GET = {  # how to get each part of the real-data folder (README, "Real data for the tests")
    "ptb": "nao-ws data download --task ptb --data-dir DIR",
    "ptb-tiny": "the first 2,000/200/200 lines of DIR/ptb's splits, as README's 'Real data for the tests' shows",
    "cifar10": "made from the CIFAR-10 download as README's 'Real data for the tests' shows",
}


def shipped_table(folder: Path) -> Path:
    """The package's built-in NAS-Bench-201 table, gunzipped into ``folder``: the same CSV the real-data folder has."""
    from nao_ws.search.sources.table import BUILT_IN

    path = folder / "nb201-cifar10-12epoch.csv"
    path.write_bytes(gzip.decompress(BUILT_IN["nb201-12epoch"].read_bytes()))
    return path


SHIPPED = {("nb201", "nb201-cifar10-12epoch.csv"): shipped_table}  # what stands in for a missing real-data file


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """``data("ptb-tiny")`` -> the path of that file or folder of the real-data folder (``data.root``); a file
    the package ships when the folder lacks it (not with ``shipped=False``); else the test is skipped, saying
    how to get the data."""
    made = {}

    def get(*parts: str, shipped: bool = True) -> Path:
        if DATA is not None and DATA.joinpath(*parts).exists():
            return DATA.joinpath(*parts)
        if shipped and parts in SHIPPED:
            if parts not in made:
                made[parts] = SHIPPED[parts](tmp_path_factory.mktemp("shipped"))
            return made[parts]
        where = f"not in {DATA}" if DATA is not None else "NAO_WS_TEST_DATA unset, no ../shared/data"
        how = GET.get(parts[0], "see README, 'Real data for the tests'")
        pytest.skip(f"needs real data {'/'.join(parts)} ({where}): set NAO_WS_TEST_DATA to a folder holding it "
                    f"({how})")

    get.root = DATA
    return get


@pytest.fixture(scope="session")
def cli():
    """``cli(args, capsys=None)`` -> (exit status, stdout, stderr): the ``nao-ws`` command run in this process,
    its output read through ``capsys`` when given, else captured here. Any exception but SystemExit propagates
    and fails the test: a user error must be a one-line message, never a traceback."""
    from nao_ws.cli import main

    def run(args, capsys=None):
        code, out, err = 0, io.StringIO(), io.StringIO()
        with contextlib.ExitStack() as stack:
            if capsys is None:
                stack.enter_context(contextlib.redirect_stdout(out))
                stack.enter_context(contextlib.redirect_stderr(err))
            try:
                main([str(a) for a in args])
            except SystemExit as e:
                code = e.code
        return (code, *capsys.readouterr()) if capsys is not None else (code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture(scope="session")
def spawn():
    """``spawn(args)`` -> the ``nao-ws`` command running in a subprocess (pipes for stdout and stderr)."""
    def start(args):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen([sys.executable, "-m", "nao_ws", *map(str, args)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    return start


@pytest.fixture(scope="session")
def kill_when():
    """``kill_when(proc, ready)``: SIGKILL ``proc`` as soon as ``ready()`` holds; False if it finished first."""
    def kill(proc, ready, timeout=300):
        end = time.time() + timeout
        while time.time() < end:
            if proc.poll() is not None:
                return False
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.02)
        proc.kill()
        raise AssertionError("the run did not reach the kill point in time")

    return kill


def read_jsonl(path) -> list:
    """Every complete line of a JSON-lines file (none if it does not exist or is cut mid-line)."""
    try:
        return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    except (OSError, json.JSONDecodeError):
        return []


def without_timing(obj):
    """``obj`` without wall-clock fields, the only values two equal runs may differ in."""
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if not k.startswith("seconds")}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


@pytest.fixture(scope="session")
def jsonl():
    """``jsonl(path)`` -> the records of a JSON-lines file; ``jsonl.untimed(obj)`` drops wall-clock fields."""
    read_jsonl.untimed = without_timing
    return read_jsonl


@pytest.fixture
def tb_scalars():
    """``tb_scalars(run_folder)`` -> {tag: [(step, value), ...]} as TensorBoard shows them (purges applied;
    NaN as None, so that equal curves compare equal)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def read(run_folder):
        acc = EventAccumulator(str(run_folder / "tb"), size_guidance={"scalars": 0})
        acc.Reload()
        return {tag: [(e.step, None if math.isnan(e.value) else e.value) for e in acc.Scalars(tag)]
                for tag in acc.Tags()["scalars"]}

    return read


# -- the strategy x score-source matrix of searches ------------------------------------------------------------

MATRIX = {  # the smallest searches that take each source's code paths
    "table": ["--task", "cifar10", "--space", "nb201", "--benchmark", ("nb201", "nb201-cifar10-12epoch.csv"),
              "--preset", "smoke", "--budget", "16"],
    "nb201": ["--task", "cifar10", "--space", "nb201", "--preset", "smoke", "--pool-size", "6", "--new-per-iter", "2",
              "--random-per-iter", "1", "--score-images", "20", "--calib-images", "16"],
    "cnn-ws": ["--task", "cifar10", "--preset", "smoke", "--epochs", "2", "--eval-every", "1", "--pool-size", "6",
               "--new-per-iter", "2", "--random-per-iter", "1", "--channels", "4", "--batch-size", "90",
               "--score-images", "20", "--rerank-top", "1", "--rerank-channels", "4", "--rerank-batch-size", "90"],
    "ptb": ["--task", "ptb", "--data-dir", ("ptb-tiny",), "--preset", "smoke", "--epochs", "2", "--eval-every", "1",
            "--pool-size", "6", "--new-per-iter", "2", "--random-per-iter", "1", "--rerank-top", "1"],
    "proxy": ["--task", "cifar10", "--space", "nb201", "--proxy", "jacob_cov", "--preset", "smoke", "--budget", "10"],
    "standalone": ["--task", "cifar10", "--space", "cnn", "--preset", "smoke", "--pool-size", "4", "--new-per-round", "2",
                   "--train-images", "32", "--channels", "4"],
}
STRATEGY_FLAGS = {"nao": ["--seeds", "3", "--controller-epochs", "8"], "rea": ["--population", "3", "--tournament", "2"],
                  "random": [], "enas": ["--policy-steps", "2", "--policy-aggregate", "2"], "local": []}
KILL_AFTER = """
import os, signal, sys
from nao_ws.runs import folder
from nao_ws.cli import main
real, calls = folder.RunDir.append_jsonl, [0]
def append(self, *args, **kwargs):
    real(self, *args, **kwargs)
    calls[0] += 1
    if calls[0] == {k}:
        os.kill(os.getpid(), signal.SIGKILL)
folder.RunDir.append_jsonl = append
main(sys.argv[1:])
"""


class Matrix:
    """The searches of the matrix: ``args``, the uninterrupted ``reference`` run (once per session), and a run
    ``killed`` with SIGKILL right after its k-th log write (a pool or metrics record) and resumed."""

    def __init__(self, data, cli, root: Path):
        self.data, self.cli, self.root, self.done = data, cli, root, {}

    def args(self, source: str, strategy: str) -> list[str]:
        args = [str(self.data(*a)) if isinstance(a, tuple) else a for a in MATRIX[source]]
        return ["search", *args, "--strategy", strategy, *STRATEGY_FLAGS[strategy], "--seed", "3", "--no-progress"]

    def reference(self, source: str, strategy: str) -> Path:
        if (source, strategy) not in self.done:
            out = self.root / f"{source}-{strategy}"
            code, _, err = self.cli(self.args(source, strategy) + ["--output", out])
            assert code == 0, f"{source}/{strategy} exited with {code}"
            self.done[source, strategy] = out
        return self.done[source, strategy]

    def killed(self, source: str, strategy: str, k: int, out: Path) -> subprocess.CompletedProcess:
        return run_killed(self.args(source, strategy) + ["--output", str(out)], k)


def run_killed(args, k: int) -> subprocess.CompletedProcess:
    """The ``nao-ws`` command ``args`` in a subprocess that SIGKILLs itself right after its k-th log write."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-c", KILL_AFTER.format(k=k), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def killed():
    """``killed(args, k)``: ``nao-ws args`` run in a subprocess killed with SIGKILL after its k-th log write."""
    return run_killed


@pytest.fixture(scope="module")
def matrix(data, cli, tmp_path_factory):
    return Matrix(data, cli, tmp_path_factory.mktemp("matrix"))
