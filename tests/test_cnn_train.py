"""`nao-ws train/eval` for CIFAR (reference §5.1) through the CLI: sizes, a smoke training on the bundled sample,
exact resume, one-line user errors; and `fit_candidate`."""
import json

import pytest
import torch

from nao_ws.data.images import load_images
from nao_ws.runs import RunDir, load_checkpoint_file
from nao_ws.train import cnn as train_cnn
from nao_ws.train.options import CnnTrainConfig
from supernet.nets import NAONET_A, NAONET_B
from supernet.spaces import parse_arch

RNN_REF = "0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 1"
# the smoke preset, shortened: 2 epochs of 5 steps
SMOKE = ["train", "--task", "cifar10-sample", "--preset", "smoke", "--epochs", "2", "--batch-size", "100",
         "--device", "cpu", "--deterministic", "--no-progress"]


@pytest.fixture(autouse=True)
def restore_torch_globals():
    """--deterministic switches on deterministic algorithms process-wide; one thread keeps the tests
    fast when other processes share the cores."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture
def run_cli(cli, capsys):
    """``run_cli(argv)`` -> the JSON object a successful command printed last."""
    def run(argv) -> dict:
        code, out, err = cli(argv)
        assert code == 0, err
        return json.loads(out.strip().splitlines()[-1])

    return run


@pytest.fixture
def user_error(cli, capsys):
    """``user_error(argv)`` -> the one error line of a failing command."""
    def run(argv) -> str:
        code, _, err = cli(argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        return err.strip()

    return run


def test_naonet_a_has_the_published_size(run_cli):
    """Reference §5.1: 144.6M parameters at N = 6, F = 128 (ref-PT: 144.58M; 11.47M at F = 36), aux excluded."""
    base = ["train", "--task", "cifar10", "--space", "cnn", "--arch", NAONET_A, "--layers", "6", "--dry-run", "--json"]
    big = run_cli(base + ["--channels", "128"])
    assert big["params"] == pytest.approx(144.6e6, rel=0.01)
    assert big["params_with_aux"] > big["params"]
    assert run_cli(base + ["--channels", "36"])["params"] == pytest.approx(11.47e6, rel=0.001)
    b = run_cli(["train", "--task", "cifar10", "--arch", NAONET_B, "--dry-run", "--json"])
    assert (b["space"], b["layers"], b["channels"]) == ("cnn-ws", 6, 36)
    assert run_cli(["train", "--task", "cifar100", "--arch", NAONET_B, "--dry-run", "--json"])["params"] > b["params"]


def test_smoke_training_resumes_bit_exactly(tmp_path, monkeypatch, tb_scalars, cli, run_cli):
    """Uninterrupted vs. killed after logging epoch 2, before its checkpoint, and resumed from epoch 1: same
    weights, same metrics, same TensorBoard curves (epoch 2 once); eval agrees."""
    full = run_cli(SMOKE + ["--output", str(tmp_path / "full")])
    assert full["epochs"] == 2 and 0 <= full["test_acc"] <= 1

    save = RunDir.save_checkpoint

    class Killed(Exception):
        pass

    def die_at_epoch_2(self, state, step, keep=2, **kwargs):
        if step == 2:
            raise Killed
        save(self, state, step, keep, **kwargs)

    monkeypatch.setattr(RunDir, "save_checkpoint", die_at_epoch_2)
    with pytest.raises(Killed):
        cli(SMOKE + ["--output", tmp_path / "cut"])
    monkeypatch.undo()
    assert [r["epoch"] for r in RunDir(tmp_path / "cut").read_jsonl("metrics.jsonl")] == [1, 2]
    resumed = run_cli(["train", "--resume", str(tmp_path / "cut"), "--no-progress"])

    assert resumed == full
    a, b = (RunDir(tmp_path / name).load_latest_checkpoint() for name in ("full", "cut"))
    assert a["trainer"]["epoch"] == b["trainer"]["epoch"] == 2
    for key, value in a["trainer"]["model"].items():
        assert torch.equal(value, b["trainer"]["model"][key]), key
    lines = [RunDir(tmp_path / name).read_jsonl("metrics.jsonl") for name in ("full", "cut")]
    strip = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert strip(lines[0]) == strip(lines[1]) and [r["epoch"] for r in lines[1]] == [1, 2]
    assert json.loads((tmp_path / "full" / "metrics.json").read_text()) == full
    curves = tb_scalars(tmp_path / "cut")
    assert [step for step, _ in curves["train/loss"]] == [1, 2] and curves == tb_scalars(tmp_path / "full")

    evaluated = run_cli(["eval", "--checkpoint", str(tmp_path / "full"), "--device", "cpu"])
    assert evaluated["test_acc"] == full["test_acc"]
    assert evaluated["test_loss"] == pytest.approx(full["test_loss"])


@pytest.mark.parametrize("flags, message", [
    (["--arch", RNN_REF], "expected 40"),
    (["--space", "cnn-ws", "--arch", NAONET_A], "out of range"),
    (["--space", "cnn", "--arch", '{"space": "cnn-ws", "normal": [], "reduce": []}'], "'cnn' is expected"),
    (["--layers", "0"], "--layers 0 must be >= 1"),
    (["--channels", "7"], "--channels 7 must be even"),
    (["--drop-path-keep", "0"], "--drop-path-keep 0.0 must be in (0, 1]"),
    (["--lr-min", "0.1"], "--lr-min 0.1 exceeds --lr 0.025"),
    (["--preset", "fast"], "unknown preset 'fast'"),
])
def test_bad_input_is_a_one_line_error(flags, message, user_error):
    err = user_error(["train", "--task", "cifar10", "--dry-run"] + flags)
    assert message in err


def test_checkpoints_of_other_models_are_refused(tmp_path, user_error):
    run = RunDir.create(str(tmp_path / "run"), "train", "cifar10-sample")
    cfg = CnnTrainConfig(task="cifar10-sample", layers=1, channels=4, epochs=1, batch_size=100)
    run.write_config({**vars(cfg)})
    path = run.save_checkpoint({"kind": "search-cnn", "config": vars(cfg)}, 1)
    run.release()  # this test made the folder; the commands below are its next owner
    assert "search-cnn" in user_error(["eval", "--checkpoint", str(path)])
    assert "search-cnn" in user_error(["train", "--resume", str(run.path), "--no-progress"])
    with pytest.raises(Exception, match="train-rnn"):
        train_cnn.evaluate({"kind": "train-rnn", "config": vars(cfg)}, "cpu", None)


def test_a_checkpoint_of_another_architecture_is_a_one_line_error():
    from nao_ws.errors import NaoWsError
    from nao_ws.runs import load_model_state
    from supernet.nets import NASNetwork

    model = NASNetwork(parse_arch(NAONET_B, "cnn-ws"), 1, 8)
    for other in (NASNetwork(parse_arch(NAONET_A, "cnn"), 1, 8), NASNetwork(parse_arch(NAONET_B, "cnn-ws"), 1, 10)):
        with pytest.raises(NaoWsError, match="does not fit this model") as info:
            load_model_state(model, other.state_dict(), "the checkpoint")
        assert "\n" not in str(info.value)


def test_fit_candidate_trains_without_a_run_folder():
    data = load_images("cifar10-sample", purpose="search")
    cfg = CnnTrainConfig(task="cifar10-sample", layers=1, channels=4, epochs=1, batch_size=90, cutout=0)
    rng = torch.get_rng_state()
    result = train_cnn.fit_candidate(parse_arch(NAONET_B), data, cfg, "cpu", seed=1)
    assert torch.equal(torch.get_rng_state(), rng)  # a fork of torch's generator, seeded
    assert 0 <= result["valid_acc"] <= 1 and result["valid_loss"] > 0 and result["params"] > 0
    assert result == {**train_cnn.fit_candidate(parse_arch(NAONET_B), data, cfg, "cpu", seed=1),
                      "seconds": result["seconds"]}


def test_divergence_rolls_back_to_the_last_checkpoint_with_a_lower_lr(monkeypatch):
    """More than --max-nan-steps non-finite steps in a row (here the first two of epoch 2) roll back to the
    checkpoint after epoch 1 (kept in memory without a run folder) and lower the rest of the schedule."""
    from supernet.steps import StepResult

    data = load_images("cifar10-sample", purpose="search")  # 450 training images: 5 steps per epoch
    cfg = CnnTrainConfig(task="cifar10-sample", layers=1, channels=4, epochs=2, batch_size=90, cutout=0,
                           max_nan_steps=1)
    real, calls = train_cnn.train_step, []

    def flaky(*args, **kwargs):
        calls.append(1)
        return StepResult(float("nan"), False, acc=0.0) if 6 <= len(calls) <= 7 else real(*args, **kwargs)

    monkeypatch.setattr(train_cnn, "train_step", flaky)
    trainer = train_cnn.CnnTrainer(parse_arch(NAONET_B), data, cfg, torch.device("cpu"), seed=0)
    trainer.checkpoint()
    trainer.fit()
    assert len(calls) == 12 and trainer.epoch == 2 and trainer.rollbacks == 1
    assert trainer.record["lr"] == pytest.approx(0.025 / 2 * 0.5)  # cosine at mid-training, halved


# -- NAS-Bench-201 cells: the benchmark's own recipe (reference §8) --------------------------------------------

def nb201_cell(*ops: str) -> str:
    """The cell string of 6 edge ops in NB201_EDGES order."""
    a, b, c, d, e, f = ops
    return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"


def test_nb201_cells_have_the_benchmarks_sizes(run_cli):
    """The NAS-Bench-201 API's parameter counts (get_cost_info, cifar10) of the space's largest and smallest
    networks: 1.531546M with every edge a 3x3 conv, 0.073306M with no parametric op; a cell string is an nb201
    architecture without --space."""
    big = run_cli(["train", "--task", "cifar10", "--arch", nb201_cell(*["nor_conv_3x3"] * 6), "--dry-run", "--json"])
    assert (big["space"], big["layers"], big["channels"], big["params"]) == ("nb201", 5, 16, 1_531_546)
    small = run_cli(["train", "--task", "cifar10", "--space", "nb201", "--dry-run", "--json",
                     "--arch", nb201_cell("skip_connect", "none", "avg_pool_3x3", "skip_connect", "none", "none")])
    assert small["params"] == 73_306 and small["multiply_adds"] < big["multiply_adds"]
    odd = run_cli(["train", "--task", "cifar10", "--arch", nb201_cell(*["nor_conv_3x3"] * 6), "--channels", "7",
                   "--dry-run", "--json"])  # no factorized reduce halves the channels here
    assert odd["channels"] == 7 and odd["params"] < big["params"]


def test_a_table_searchs_best_cell_trains_with_the_benchmarks_recipe(tmp_path, cli, run_cli):
    from nao_ws.config.recipes import Nb201Supernet

    code, _, err = cli(["search", "--task", "cifar10", "--space", "nb201", "--benchmark", "nb201-12epoch",
                        "--strategy", "random", "--budget", "12", "--output", str(tmp_path / "s"), "--no-progress"])
    assert code == 0, err
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    out = tmp_path / "t"
    done = run_cli(["train", "--arch", str(tmp_path / "s" / "best.json"), "--task", "cifar10-sample", "--preset",
                    "smoke", "--epochs", "1", "--batch-size", "100", "--device", "cpu", "--no-progress",
                    "--output", str(out)])
    assert (done["space"], done["arch"], done["epochs"]) == ("nb201", best["text"], 1)
    cfg = json.loads((out / "config.json").read_text())
    recipe = Nb201Supernet()
    assert {k: cfg[k] for k in ("lr", "lr_min", "nesterov", "weight_decay", "momentum")} == \
        {k: getattr(recipe, k) for k in ("lr", "lr_min", "nesterov", "weight_decay", "momentum")}
    assert (cfg["cutout"], cfg["aux_weight"], cfg["drop_path_keep"], cfg["head_keep"], cfg["grad_clip"]) == \
        (0, 0.0, 1.0, 1.0, 0.0)
    state = load_checkpoint_file(out)
    assert state["trainer"]["optimizer"]["param_groups"][0]["nesterov"] is True
    evaluated = run_cli(["eval", "--checkpoint", str(out), "--device", "cpu"])
    assert evaluated["test_acc"] == done["test_acc"]


@pytest.mark.parametrize("flags, message", [
    (["--space", "nb201"], "--space nb201 needs --arch"),
    (["--arch", nb201_cell(*["nor_conv_1x1"] * 6), "--aux-weight", "0.4"], "no auxiliary head"),
    (["--arch", nb201_cell(*["nor_conv_1x1"] * 6), "--drop-path-keep", "0.8"], "leave --drop-path-keep out"),
    (["--arch", nb201_cell(*["nor_conv_1x1"] * 6), "--task", "imagenet"], "ImageNet training takes a cnn"),
    (["--arch", nb201_cell(*["nor_conv_1x1"] * 6), "--preset", "transfer"], "unknown preset 'transfer'"),
])
def test_impossible_nb201_trainings_are_one_line_errors(flags, message, user_error):
    task = [] if "--task" in flags else ["--task", "cifar10"]
    assert message in user_error(["train", *task, "--dry-run", *flags])


def test_grad_clip_zero_clips_nothing():
    from supernet import optim
    from supernet.cnn import train_step

    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    arch = parse_arch(nb201_cell(*["nor_conv_3x3"] * 6), "nb201")

    def stepped(clip: float) -> torch.Tensor:
        from supernet.nb201 import Nb201Network

        torch.manual_seed(1)
        net = Nb201Network(arch, 1, 4)
        train_step(net, optim.sgd(net.parameters(), lr=1.0), x, y, grad_clip=clip)
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    unclipped = stepped(0.0)
    assert torch.equal(unclipped, stepped(1e12))
    assert not torch.allclose(unclipped, stepped(1e-3))
