"""Bad input is a one-line error (exit status 2, no traceback) and nothing is lost or half-written: the
cases of issue 16 (binary and malformed files, option ranges, unusable output paths, a full disk, --amp
without CUDA, validation before the run folder exists, resume without a checkpoint, cut logs, the
architecture a train run stores, data files that must not run code)."""
import dataclasses
import errno
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nao_ws.config.options import field_types
from nao_ws.errors import NaoWsError
from nao_ws.runs import RunDir, files
from nao_ws.search import options as search_options
from nao_ws.train import cnn as train_cnn, options as train_options
from supernet.spaces import arch_to_json, parse_arch

NAONET_B = "0 1 0 2 0 1 2 2 1 3 0 2 4 0 1 3 2 1 0 3 | 1 1 1 0 2 1 2 4 1 0 2 3 3 1 2 2 0 2 0 2"
TRAIN = ["train", "--task", "cifar10-sample", "--preset", "smoke", "--epochs", "2", "--batch-size", "100",
         "--layers", "1", "--channels", "4", "--device", "cpu", "--deterministic", "--no-progress"]
SEARCH = ["search", "--task", "ptb", "--data-dir", "PTB_TINY", "--preset", "smoke", "--epochs", "1", "--eval-every",
          "1", "--pool-size", "4", "--new-per-iter", "2", "--random-per-iter", "1", "--rerank-top", "0", "--strategy",
          "random", "--emb-size", "16", "--batch-size", "512", "--score-windows", "4", "--device", "cpu",
          "--deterministic", "--no-progress"]



@pytest.fixture(autouse=True)
def restore_torch_globals():
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture
def one_line_error(cli, capsys, data):
    """``one_line_error(args, *needles)``: the command fails with one error line (a search may have said where
    its run folder is before) holding every needle; ``PTB_TINY`` in ``args`` is the real-data PTB excerpt."""
    def check(args, *needles) -> str:
        args = [str(data("ptb-tiny")) if a == "PTB_TINY" else a for a in args]
        code, _, err = cli(args, capsys)
        lines = [line for line in err.strip().splitlines() if not line.startswith("run folder: ")]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        for needle in needles:
            assert str(needle) in lines[0], lines[0]
        return lines[0]

    return check


@pytest.mark.parametrize("args, needle", [
    (["data", "check"], "Missing option '--task'. Choose from: cifar10,"),  # click lists them over several lines
    (["train", "--task", "mnist"], "'mnist' is not one of"),
    (["search", "--task", "cifar10", "--space", "nb201", "--score-proxy", "x"], "use '' or params or"),  # '' = off
])
def test_usage_errors_are_one_line(args, needle, capsys, one_line_error):
    one_line_error(args, needle)


@pytest.fixture
def binary(tmp_path):
    p = tmp_path / "weights.json"
    p.write_bytes(bytes(range(256)) * 4)
    return p


# -- files that are not what they should be ---------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["arch", "show"], ["plot", "-o", "x.png"], ["train", "--task", "cifar10", "--dry-run", "--arch"],
                                 ["train", "--dry-run", "--arch"]])
def test_binary_architecture_file(cmd, binary, capsys, one_line_error):
    one_line_error(cmd + [str(binary)], binary, "not text")


def test_architecture_path_that_is_a_folder(tmp_path, capsys, one_line_error):
    one_line_error(["arch", "show", str(tmp_path) + "/"], "is a folder")


@pytest.mark.parametrize("cmd", [["train", "--task", "cifar10", "--dry-run"], ["search", "--task", "ptb"]])
def test_binary_or_folder_config(cmd, binary, tmp_path, capsys, one_line_error):
    one_line_error(cmd + ["--config", str(binary), "--output", str(tmp_path / "run")], binary, "not text")
    one_line_error(cmd + ["--config", str(tmp_path), "--output", str(tmp_path / "run")], "is a folder")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, needle", [
    ("epochs: [1, 2\nlr: 0.1\n", "line 2"),
    ("lr: 0.1\n  epochs: 2\n", "line 2"),
    ("a: b: c\n", "line 1"),
])
def test_yaml_syntax_errors(text, needle, tmp_path, capsys, one_line_error):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    one_line_error(["train", "--task", "cifar10", "--dry-run", "--config", str(p)], "not valid YAML", needle)


def test_config_values_out_of_range_name_the_file(tmp_path, capsys, one_line_error):
    p = tmp_path / "c.json"
    p.write_text('{"lr": -1, "epochs": 2}')
    one_line_error(["train", "--task", "cifar10", "--dry-run", "--config", str(p)], p, "--lr -1 must be > 0")
    p.write_text('{"momentum": NaN}')
    one_line_error(["train", "--task", "cifar10", "--dry-run", "--config", str(p)], p, "NaN is not a JSON value")
    p = tmp_path / "c.yaml"
    p.write_text("momentum: .nan\n")
    one_line_error(["train", "--task", "cifar10", "--dry-run", "--config", str(p)], "--momentum nan")


@pytest.mark.parametrize("name, text, needle", [
    ("c.json", '{"lr": 0.1, "epochs": 2, "lr": 0.2}', 'key "lr" appears twice'),  # json.loads: last wins
    ("c.yaml", "lr: 0.1\nepochs: 2\nlr: 0.2\n", "key 'lr' appears twice in one mapping at line 3"),  # PyYAML too
    ("c.yaml", "batch-size: 8\nbatch_size: 16\n", "sets --batch-size twice"),
    ("c.json", '{"batch_size": 8, "batch-size": 16}', "sets --batch-size twice"),
    ("c.yaml", "lr: !!python/object/apply:os.system [touch pwned]\n", "could not determine a constructor"),
])
def test_a_config_file_that_says_a_thing_twice_or_runs_code_is_refused(name, text, needle, tmp_path, capsys,
                                                                       one_line_error, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / name
    p.write_text(text)
    one_line_error(["train", "--task", "cifar10", "--dry-run", "--config", str(p)], p, needle)
    assert sorted(tmp_path.iterdir()) == [p]


def test_damaged_json_of_a_run_folder(tmp_path, binary, capsys, one_line_error):
    (tmp_path / "config.json").write_bytes(binary.read_bytes())
    one_line_error(["search", "--resume", str(tmp_path)], "damaged")
    (tmp_path / "config.json").write_text("[1, 2]")
    one_line_error(["train", "--resume", str(tmp_path)], "damaged")
    (tmp_path / "config.json").write_text('{"task": "cifar10", "strategy": "nao", "task": "ptb"}')  # last wins
    one_line_error(["report", str(tmp_path), "-o", str(tmp_path / "out")], "damaged", 'key "task" appears twice')
    (tmp_path / "config.json").write_text('{"task": "cifar10", "strategy": "nao"}')
    (tmp_path / "best.json").write_text('{"text": "0", "score": 1.0, "score": 2.0}')
    one_line_error(["report", str(tmp_path), "-o", str(tmp_path / "out")], "best.json", 'key "score" appears twice')


# -- option ranges --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, needle", [
    (["--score-images", "0"], "--score-images 0 must be >= 1"),
    (["--score-batch", "0"], "--score-batch 0 must be >= 1"),
    (["--seed", "-1"], "--seed -1 must be in [0, 4294967295]"),
    (["--lr", "-1"], "--lr -1.0 must be > 0"),
    (["--lr", "nan"], "--lr nan must be a finite number > 0"),
    (["--momentum", "1"], "--momentum 1.0 must be in [0, 1)"),
    (["--head-keep", "inf"], "--head-keep inf must be a finite number in (0, 1]"),
    (["--epochs", "1_0"], "'1_0' is not an integer in digits 0-9"),  # int() reads these four as numbers
    (["--seed", "+3"], "'+3' is not an integer in digits 0-9"),
    (["--pool-size", "\u0661\u0660"], "is not an integer in digits 0-9"),
    (["--new-per-iter", " 4"], "' 4' is not an integer in digits 0-9"),
    (["--lr", "1_0.5"], "'1_0.5' is not a number in digits 0-9"),
    (["--new-per-iter", "0"], "--new-per-iter 0 must be >= 1"),
    (["--channels", "7"], "--channels 7 must be even"),
    (["--lr-min", "0.1", "--lr", "0.05"], "--lr-min 0.1 exceeds --lr 0.05"),
])
def test_search_option_ranges(flags, needle, tmp_path, capsys, one_line_error):
    one_line_error(["search", "--task", "cifar10", "--preset", "smoke", *flags, "--output", str(tmp_path / "run")],
                   needle)
    assert not (tmp_path / "run").exists()


def test_every_numeric_option_has_a_range():
    """A number's range is declared with the number: every int and float field of every command has one."""
    classes = (*search_options.CONFIGS, train_options.CnnTrainConfig, train_options.RnnTrainConfig)
    for cls in classes:
        types, fields = field_types(cls), {f.name: f for f in dataclasses.fields(cls)}
        for name, t in types.items():
            if t in (int, float):
                within = fields[name].metadata.get("within")
                assert within is not None, f"{cls.__qualname__}.{name} declares no range"
                assert fields[name].default is None or fields[name].default in within, (cls, name)


# -- output paths -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [TRAIN, SEARCH])
def test_output_that_is_a_file_or_under_one(cmd, tmp_path, capsys, one_line_error):
    f = tmp_path / "file"
    f.write_text("keep me")
    one_line_error(cmd + ["--output", str(f)], "is a file, not a folder")
    one_line_error(cmd + ["--output", str(f / "run")], f"lies under {f}")
    assert f.read_text() == "keep me"


def read_only(monkeypatch):
    """A read-only file system: creating a folder fails with EROFS (tests run as root, so chmod would not)."""
    def mkdir(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", mkdir)


@pytest.mark.parametrize("cmd", [TRAIN, SEARCH])
def test_output_on_a_read_only_file_system(cmd, tmp_path, capsys, monkeypatch, one_line_error):
    read_only(monkeypatch)
    one_line_error(cmd + ["--output", str(tmp_path / "run")], "Read-only file system", "writ")


def test_plot_output_unwritable(tmp_path, capsys, monkeypatch, one_line_error):
    one_line_error(["plot", NAONET_B, "-o", str(tmp_path)], "is a folder")
    for name in ("cells.foo", "cells"):
        one_line_error(["plot", NAONET_B, "-o", str(tmp_path / name)], "ending in .png")
    (tmp_path / "f").write_text("")
    one_line_error(["plot", NAONET_B, "-o", str(tmp_path / "f" / "cells.png")], "which is a file")
    read_only(monkeypatch)
    one_line_error(["plot", NAONET_B, "-o", str(tmp_path / "new" / "cells.png")], "Read-only file system")


def test_data_download_into_a_path_under_a_file(tmp_path, capsys, one_line_error):
    (tmp_path / "f").write_text("")
    one_line_error(["data", "download", "--task", "ptb", "--data-dir", str(tmp_path / "f")], "is a file")


# -- a full disk --------------------------------------------------------------------------------------------

def full_disk_for(monkeypatch, suffix: str, after: int = 0):
    """Writes to files ending in ``suffix`` fail with ENOSPC, from the ``after``-th such file on."""
    real_open, seen = open, []

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def fake_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        if str(path).endswith(suffix) and "w" in mode:
            seen.append(path)
            if len(seen) > after:
                return Full(fh)
        return fh

    monkeypatch.setattr(files, "open", fake_open, raising=False)


def test_disk_full_while_writing_a_checkpoint(tmp_path, monkeypatch):
    run = RunDir.create(str(tmp_path / "run"), "train", "x")
    first = run.save_checkpoint({"kind": "k", "w": torch.ones(3)}, 1)
    full_disk_for(monkeypatch, ".pt.tmp")
    with pytest.raises(NaoWsError, match=f"No space left on device.*free some disk space, then continue "
                                              f"with --resume {run.path}"):
        run.save_checkpoint({"kind": "k", "w": torch.zeros(3)}, 2)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == [first.name, first.with_suffix(".sha256").name]
    assert torch.equal(run.load_latest_checkpoint()["w"], torch.ones(3))


def test_disk_full_during_a_search_then_resume(finished, tmp_path, monkeypatch, capsys, one_line_error, cli):
    """The checkpoint after the first epoch fails for lack of space: one line, no temporary file; once space
    is free, the resume ends the search as the uninterrupted run did."""
    ref = finished / "search"
    out = tmp_path / "run"
    full_disk_for(monkeypatch, ".pt.tmp", after=1)
    one_line_error(SEARCH + ["--output", str(out)], "No space left on device", f"--resume {out}")
    assert not list(out.rglob("*.tmp")) and len(RunDir(out).list_checkpoints()) == 1
    monkeypatch.undo()
    code, _, err = cli(["search", "--resume", str(out), "--no-progress"], capsys)
    assert code == 0, err
    for name in ("pool.jsonl", "metrics.jsonl"):
        a, b = ([{k: v for k, v in r.items() if "seconds" not in k} for r in RunDir(p).read_jsonl(name)]
                for p in (out, ref))
        assert a == b, name
    assert json.loads((out / "best.json").read_text())["text"] == json.loads((ref / "best.json").read_text())["text"]


# -- devices -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [TRAIN, ["search", "--task", "cifar10", "--preset", "smoke"]])
def test_amp_needs_cuda(cmd, tmp_path, capsys, one_line_error):
    one_line_error(cmd + ["--amp", "--device", "cpu", "--output", str(tmp_path / "run")],
                   "bf16 autocast", "needs CUDA")
    assert not (tmp_path / "run").exists()


# -- validation before anything exists ------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["train", "--task", "cifar10", "--preset", "smoke", "--device", "cpu"], SEARCH])
@pytest.mark.parametrize("flags, needle", [
    (["--batch-size", "0"], "--batch-size 0"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"], "device"),
    (["--data-dir", "/nonexistent/data"], "/nonexistent/data"),
])
def test_failed_validation_creates_nothing(cmd, flags, needle, tmp_path, capsys, one_line_error):
    """So the corrected command may use the same --output."""
    out = tmp_path / "run"
    one_line_error(cmd + [*flags, "--output", str(out)], needle)
    assert not out.exists()


def test_a_start_failing_after_the_folder_exists_leaves_nothing(tmp_path, capsys, monkeypatch, one_line_error):
    """Errors only the run itself finds (here: the first data batch) remove what the start created; an
    --output that existed (empty) stays, empty."""
    def broken(*args, **kwargs):
        raise NaoWsError("the data broke")

    monkeypatch.setattr(train_cnn, "load_images", broken)
    one_line_error(TRAIN + ["--output", str(tmp_path / "a" / "b")], "the data broke")
    assert not (tmp_path / "a").exists()
    (tmp_path / "empty").mkdir()
    one_line_error(TRAIN + ["--output", str(tmp_path / "empty")], "the data broke")
    assert list((tmp_path / "empty").iterdir()) == []


# -- resume ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory, cli, data):
    """A finished train run and a finished search run (module-wide, copied by the tests that change them)."""
    base = tmp_path_factory.mktemp("finished")
    arch_file = base / "arch.json"
    arch_file.write_text(json.dumps(arch_to_json(parse_arch(NAONET_B))))
    search = [str(data("ptb-tiny")) if a == "PTB_TINY" else a for a in SEARCH]
    for args in (TRAIN + ["--arch", str(arch_file), "--output", str(base / "train")],
                 search + ["--output", str(base / "search")]):
        code, _, err = cli(args)
        assert code == 0 and f"run folder: {args[args.index('--output') + 1]}" in err, err
    return base


def copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("kind", ["train", "search"])
def test_resume_without_checkpoints_appends_nothing(kind, finished, tmp_path, capsys, one_line_error):
    run = copy_run(finished / kind, tmp_path / kind)
    logs = {p.name: p.read_bytes() for p in run.glob("*.jsonl")}
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    one_line_error([kind, "--resume", str(run)], "holds no checkpoint", "new --output")
    assert {p.name: p.read_bytes() for p in run.glob("*.jsonl")} == logs


@pytest.mark.parametrize("kind, log", [("search", "pool.jsonl"), ("search", "metrics.jsonl"),
                                       ("train", "metrics.jsonl")])
def test_resume_restores_a_cut_log_from_the_checkpoint(kind, log, finished, tmp_path, capsys, cli):
    run = copy_run(finished / kind, tmp_path / kind)
    whole = (run / log).read_bytes()
    (run / log).write_bytes(whole[: len(whole) // 3])  # cut mid-line: the later records are gone too
    code, _, err = cli([kind, "--resume", str(run), "--no-progress"], capsys)
    assert code == 0, err
    assert (run / log).read_bytes() == whole


def test_train_stores_the_architecture_not_its_file(finished, tmp_path, capsys, cli):
    """config.json holds the architecture itself: changing the file the run was started with changes nothing."""
    run = copy_run(finished / "train", tmp_path / "train")
    saved = json.loads((run / "config.json").read_text())
    assert saved["arch"] == NAONET_B
    (finished / "arch.json").write_text("0 0 0 0")  # would not even parse
    for p in (run / "checkpoints").glob("ckpt-0000000002.*"):  # resume from the first epoch's checkpoint
        p.unlink()
    code, out, err = cli(["train", "--resume", str(run), "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["arch"] == NAONET_B


# -- data files must not run code ------------------------------------------------------------------------------

class Plant:
    """Unpickled, calls open(path, "w"): a file appears."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_planted_cifar_batch_runs_nothing(tmp_path, capsys, one_line_error, cli):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Plant(probe))).close()
    assert probe.exists()  # plain pickle would run it

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    target = tmp_path / "pwned"
    x = np.zeros((10, 3072), np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": x, "labels": list(range(10)), "batch_label": name}
        if name == "data_batch_1":
            entry["filenames"] = Plant(target)
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    one_line_error(["data", "check", "--task", "cifar10", "--data-dir", str(tmp_path / "data")],
                   "data_batch_1", "refers to", "delete it")
    one_line_error(TRAIN[:2] + ["cifar10", "--data-dir", str(tmp_path / "data"), "--output", str(tmp_path / "run")],
                   "data_batch_1")
    assert not target.exists() and not (tmp_path / "run").exists()
    # the same batches without the plant load, in protocol 2 (the official files) as in the current one
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": x, "labels": list(range(10))}))
    code, out, err = cli(["data", "check", "--task", "cifar10", "--data-dir", str(tmp_path / "data")], capsys)
    assert code == 0 and "50 train / 10 test images" in out, err


# -- one owner per run folder, nothing written outside it, resume checks what it resumes (issue 27) ----------

HOLD = "import sys, time; from nao_ws.runs import RunDir; r = RunDir.open(sys.argv[1]); print('held', flush=True); " \
       "time.sleep(120)"


@pytest.mark.parametrize("kind", ["train", "search"])
def test_a_second_process_is_refused_and_a_killed_owner_never_blocks(kind, finished, tmp_path, capsys, cli,
                                                                     one_line_error):
    import subprocess
    import sys

    run = copy_run(finished / kind, tmp_path / kind)
    owner = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parents[1])
    try:
        assert owner.stdout.readline().strip() == "held"
        logs = {p.name: p.read_bytes() for p in run.glob("*.jsonl")}
        one_line_error([kind, "--resume", str(run), "--no-progress"], f"in use by process {owner.pid}")
        assert {p.name: p.read_bytes() for p in run.glob("*.jsonl")} == logs
    finally:
        owner.kill()
        owner.wait()
    code, _, err = cli([kind, "--resume", str(run), "--no-progress"], capsys)  # the dead owner's lock is gone
    assert code == 0, err


@pytest.mark.parametrize("name", ["log.txt", "metrics.jsonl", "checkpoints"])
def test_resume_writes_nothing_through_a_symlink(name, finished, tmp_path, capsys, one_line_error):
    run = copy_run(finished / "train", tmp_path / "train")
    outside = tmp_path / "elsewhere"
    (run / name).rename(outside)
    (run / name).symlink_to(outside)
    before = sorted((p, p.stat().st_size) for p in [outside, *outside.rglob("*")])
    one_line_error(["train", "--resume", str(run), "--no-progress"], f"{run / name} is a symbolic link")
    assert sorted((p, p.stat().st_size) for p in [outside, *outside.rglob("*")]) == before


def test_appends_never_follow_a_link(tmp_path):
    run = RunDir.create(str(tmp_path / "run"), "search", "x")
    outside = tmp_path / "outside.txt"
    outside.write_text("mine\n")
    (run.path / "log.txt").symlink_to(outside)
    with pytest.raises(NaoWsError, match="is a symbolic link"):
        run.log("hello")
    (run.path / "pool.jsonl.tmp").symlink_to(outside)  # a planted temporary file of an atomic write
    run.truncate_jsonl("pool.jsonl", 0)
    assert outside.read_text() == "mine\n" and not (run.path / "pool.jsonl").is_symlink()


@pytest.mark.parametrize("kind, field, value, shown", [("train", "channels", 6, "channels 4 → 6"),
                                                       ("search", "strategy", "nao", 'strategy "random" → "nao"'),
                                                       ("search", "emb_size", 24, "emb_size 16 → 24")])
def test_resume_names_an_edited_config_field(kind, field, value, shown, finished, tmp_path, capsys, one_line_error):
    run = copy_run(finished / kind, tmp_path / kind)
    cfg = json.loads((run / "config.json").read_text())
    cfg[field] = value
    (run / "config.json").write_text(json.dumps(cfg))
    logs = {p.name: p.read_bytes() for p in run.glob("*.jsonl")}
    one_line_error([kind, "--resume", str(run)], f"config.json was edited after the run started: {shown}",
                   "restore it", "start a new run")
    assert {p.name: p.read_bytes() for p in run.glob("*.jsonl")} == logs


# -- sizes that cannot work, before the run folder exists (issue 27) -------------------------------------------

@pytest.mark.parametrize("cmd, flags, needles", [
    (SEARCH, ["--bptt", "3000"], ["--bptt 3000", "validation split has 4722", "--bptt 2360 or less"]),
    (SEARCH, ["--batch-size", "30000"], ["--batch-size 30000 leaves 1 row(s)", "at most 22164"]),
    (TRAIN, ["--channels", "200000"], ["parameters", "GiB free", "lower --channels"]),
])
def test_impossible_sizes_are_refused_before_the_folder_exists(cmd, flags, needles, tmp_path, capsys,
                                                               one_line_error):
    out = tmp_path / "run"
    one_line_error(cmd + [*flags, "--output", str(out)], *needles)
    assert not out.exists()


def test_a_failed_allocation_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, one_line_error):
    def allocate(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(train_cnn, "load_images", allocate)
    one_line_error(TRAIN + ["--output", str(tmp_path / "run")], "out of memory on cpu", "lower --batch-size")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("entry", ["model", "epoch", "trainer"])
def test_eval_of_a_checkpoint_missing_an_entry(entry, finished, tmp_path, capsys, one_line_error):
    state = RunDir(finished / "train").load_latest_checkpoint()
    del (state if entry == "trainer" else state["trainer"])[entry]
    torch.save(state, tmp_path / "cut.pt")
    named = "model" if entry == "trainer" else entry
    one_line_error(["eval", "--checkpoint", str(tmp_path / "cut.pt")], f"holds no '{named}'",
                   "evaluate another checkpoint")


# -- newcomer surprises (issue 27) ------------------------------------------------------------------------------

def test_train_with_a_missing_arch_file_says_so(tmp_path, capsys, one_line_error):
    one_line_error(["train", "--arch", str(tmp_path / "nothere.json")], "nothere.json does not exist")


@pytest.mark.parametrize("cmd", [["data", "check", "--task", "cifar10"], ["data", "check", "--task", "ptb"],
                                 ["train", "--task", "ptb", "--preset", "smoke", "--dry-run"]])
def test_a_data_dir_that_is_a_file(cmd, tmp_path, capsys, one_line_error):
    npz = tmp_path / "images.npz"
    np.savez(npz, x=np.zeros((2, 32, 32, 3), np.uint8), y=np.zeros(2, np.int64))
    line = one_line_error(cmd + ["--data-dir", str(npz)], f"--data-dir {npz} is a file, not a folder", "--data-file")
    assert "download" not in line


def test_train_of_a_search_best_reads_the_data_the_search_read(finished, capsys, cli):
    """The search read PTB from --data-dir (the excerpt); its best.json trains on it without the flag."""
    code, out, err = cli(["train", "--arch", str(finished / "search" / "best.json"), "--dry-run", "--json"], capsys)
    assert code == 0, err
    tokens = json.loads(out)["train_tokens"]
    assert tokens == json.loads(cli(["train", "--task", "ptb", "--data-dir", json.loads(
        (finished / "search" / "config.json").read_text())["data_dir"], "--dry-run", "--json"])[1])["train_tokens"]


def test_resume_refuses_data_changed_since_the_start(data, tmp_path, capsys, cli, one_line_error):
    """The PTB text a search read is fingerprinted in its checkpoints: an edited split stops the resume."""
    import shutil

    corpus = shutil.copytree(data("ptb-tiny"), tmp_path / "ptb")
    args = [str(corpus) if a == "PTB_TINY" else a for a in SEARCH]
    code, _, err = cli(args + ["--output", str(tmp_path / "run")], capsys)
    assert code == 0, err
    valid = next(corpus.rglob("*valid*"))
    valid.write_bytes(valid.read_bytes() + b" the\n")
    one_line_error(["search", "--resume", str(tmp_path / "run")], f"{valid} changed since the run", "start a new run")
