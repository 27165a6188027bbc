"""Final RNN training (reference §5.2): model size, smoke run, exact resume, NT-ASGD, rollback, eval, user errors."""
import json
import math

import pytest
import torch

from nao_ws.runs import RunDir
from nao_ws.train import rnn as train_rnn
from nao_ws.train.options import config_class
from supernet import rnn
from supernet.spaces import parse_arch

REF_22 = "0 1 1 1 2 2 1 2 4 1 4 1 4 1 7 1 8 2 1 0 4 1"  # reference §5.2


class Interrupted(Exception):
    pass


@pytest.fixture(autouse=True)
def restore_determinism():
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


@pytest.fixture(scope="module")
def tiny_run(data):
    """The options of a smoke training on ptb-tiny: ~15 windows of 20 tokens per epoch."""
    return ["train", "--task", "ptb", "--preset", "smoke", "--data-dir", data("ptb-tiny"), "--emb-size", "12",
            "--batch-size", "128", "--bptt", "20", "--eval-batch-size", "50", "--test-batch-size", "50",
            "--checkpoint-steps", "5", "--no-progress", "--deterministic"]


@pytest.fixture
def result(cli, capsys):
    """``result(args)`` -> the JSON object a successful command printed last."""
    def run(args):
        code, out, err = cli(args, capsys)
        assert code == 0, err
        return json.loads(out.strip().splitlines()[-1])

    return run


@pytest.fixture
def error(cli, capsys):
    """``error(args)`` -> the one error line of a failing command."""
    def run(args) -> str:
        code, _, err = cli(args, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        return err.strip()

    return run


def latest(path):
    """The latest checkpoint, its trainer's state (``state["trainer"]``) merged in at the top."""
    state = RunDir(path).load_latest_checkpoint()
    return {**state, **state["trainer"]}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, tiny_run, cli):
    """An uninterrupted two-epoch run on ptb-tiny."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    enabled = torch.are_deterministic_algorithms_enabled()
    assert cli([*tiny_run, "--output", out])[0] == 0
    torch.use_deterministic_algorithms(enabled)
    return out


def test_reference_cell_has_the_paper_size(result, data):
    dry = ["train", "--task", "ptb", "--data-dir", data("ptb"), "--dry-run", "--json", "--arch"]
    info = result(dry + [REF_22])
    assert info["vocab"] == 10000 and info["emb_size"] == info["hidden_size"] == 850
    assert abs(info["params"] / 27e6 - 1) < 0.03  # reference §5.2: 27M
    assert result(dry + ["0 " + REF_22]) == info
    cls, _, defaults = config_class("wikitext2")
    wt2 = cls(task="wikitext2", **defaults)
    assert (wt2.emb_size, wt2.hidden_size, wt2.weight_decay, wt2.dropout_hidden) == (700, 700, 5e-7, 0.15)


def test_smoke_run_writes_its_results(smoke_run, result):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    records = RunDir(smoke_run).read_jsonl("metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2] and metrics["epochs"] == 2
    assert metrics["valid_ppl"] == min(r["valid_ppl"] for r in records) < records[0]["train_ppl"]
    assert math.isfinite(metrics["test_ppl"]) and list((smoke_run / "tb").iterdir())
    state = latest(smoke_run)
    assert state["kind"] == "train-rnn" and state["epoch"] == 2 and state["config"]["emb_size"] == 12
    evaluated = result(["eval", "--checkpoint", smoke_run])
    assert evaluated["test_ppl"] == pytest.approx(metrics["test_ppl"], rel=1e-9)


def test_interrupted_and_resumed_equals_uninterrupted(smoke_run, tmp_path, monkeypatch, tiny_run, cli):
    out = tmp_path / "run"
    step, calls = rnn.train_step, []

    def dies_at_step_23(*args, **kwargs):  # in epoch 2, three steps after a checkpoint
        calls.append(1)
        if len(calls) == 23:
            raise Interrupted
        return step(*args, **kwargs)

    monkeypatch.setattr(rnn, "train_step", dies_at_step_23)
    with pytest.raises(Interrupted):
        cli([*tiny_run, "--output", out])
    assert latest(out)["step"] == 20
    monkeypatch.setattr(rnn, "train_step", step)
    assert cli(["train", "--resume", out, "--no-progress"])[0] == 0
    a, b = latest(smoke_run), latest(out)
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 2
    for key in ("model", "best_model"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert torch.equal(a["hidden"], b["hidden"])
    assert json.loads((out / "metrics.json").read_text()) == json.loads((smoke_run / "metrics.json").read_text())
    def records(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in RunDir(path).read_jsonl("metrics.jsonl")]

    assert records(out) == records(smoke_run)


def test_resumed_run_has_the_uninterrupted_curves(smoke_run, tmp_path, monkeypatch, tb_scalars, tiny_run, cli):
    """Killed after logging epoch 1's scalars, before the checkpoint that ends it: the resumed run redoes the
    end of epoch 1, and TensorBoard shows it once."""
    out = tmp_path / "run"
    checkpoint = train_rnn.RnnTrainer.checkpoint

    def die_ending_epoch_1(self):
        if self.stream.epoch == 1 and self.stream.position == 0:
            raise Interrupted
        checkpoint(self)

    monkeypatch.setattr(train_rnn.RnnTrainer, "checkpoint", die_ending_epoch_1)
    with pytest.raises(Interrupted):
        cli([*tiny_run, "--output", out])
    assert [r["epoch"] for r in RunDir(out).read_jsonl("metrics.jsonl")] == [1]
    monkeypatch.undo()
    assert cli(["train", "--resume", out, "--no-progress"])[0] == 0
    curves, ref = ({k: v for k, v in tb_scalars(p).items() if k != "epoch/seconds"} for p in (out, smoke_run))
    assert len(curves["epoch/valid_ppl"]) == 2 and curves == ref


@pytest.fixture(scope="module")
def small_corpus(data):
    """A few thousand tokens of ptb-tiny: enough to exercise the training loop, no quality claim."""
    from nao_ws.data.text import Corpus, load_corpus

    c = load_corpus("ptb", data("ptb-tiny"))
    return Corpus(c.dictionary, c.train[:3000], c.valid[:600], c.test[:600], c.name)


SMALL = dict(task="ptb", emb_size=8, batch_size=20, bptt=10, eval_batch_size=10)


def test_switch_to_averaged_sgd(monkeypatch, small_corpus):
    losses = iter([5.0, 6.0, 7.0, 8.0])
    monkeypatch.setattr(rnn, "evaluate_stream", lambda *args, **kwargs: next(losses))
    cfg = train_rnn.RnnTrainConfig(**SMALL, epochs=4, asgd_patience=1)
    trainer = train_rnn.RnnTrainer(cfg, parse_arch(REF_22, "rnn"), small_corpus, torch.device("cpu"), seed=0)
    trainer.fit()
    # epoch 3 is worse than the best before the last epoch: NT-ASGD from then on (reference §5.2)
    assert trainer.history == [5.0, 6.0, 7.0] and trainer.best_loss == 5.0
    assert 0 < trainer.average.count < trainer.step // 2
    assert not all(torch.equal(a, p) for a, p in zip(trainer.average.avg, trainer.model.parameters()))


def test_param_average_is_the_mean_of_the_iterates():
    p = torch.nn.Parameter(torch.zeros(3))
    average = train_rnn.ParamAverage([p])
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            p.fill_(value)
        average.update()
    with average.swapped_in():
        assert torch.allclose(p, torch.full((3,), 3.0))
    assert torch.equal(p, torch.full((3,), 6.0))


def test_non_finite_losses_are_skipped_then_rolled_back_with_a_lower_lr(tmp_path, monkeypatch, small_corpus):
    """One non-finite step is skipped; more than --max-nan-steps in a row roll back to the last checkpoint."""
    step, calls = rnn.train_step, []

    def nan_at_calls_3_and_8_to_10(model, optimizer, window, hidden, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3 or 8 <= len(calls) <= 10:
            return rnn.StepResult(float("nan"), False, hidden=torch.zeros_like(hidden))
        return step(model, optimizer, window, hidden, *args, **kwargs)

    monkeypatch.setattr(rnn, "train_step", nan_at_calls_3_and_8_to_10)
    run = RunDir.create(str(tmp_path / "run"), "train", "ptb")
    cfg = train_rnn.RnnTrainConfig(**SMALL, epochs=1, lr=4.0, checkpoint_steps=5, max_nan_steps=2)
    trainer = train_rnn.RnnTrainer(cfg, parse_arch(REF_22, "rnn"), small_corpus, torch.device("cpu"), 0, run=run)
    trainer.checkpoint()
    trainer.fit()
    assert trainer.step == len(calls) - 5  # call 3 skipped; calls 7 to 10 undone from the step-5 checkpoint
    log = (run.path / "log.txt").read_text()
    assert log.count("rolled back") == 1 and "rolled back to step 5" in log and "x0.5 of the recipe's" in log
    assert [r["lr"] for r in run.read_jsonl("metrics.jsonl")] == [2.0]


def test_fit_candidate_trains_without_a_run_folder(small_corpus):
    cfg = train_rnn.RnnTrainConfig(**SMALL, epochs=1)
    rng = torch.get_rng_state()
    result = train_rnn.fit_candidate(REF_22, small_corpus, cfg, "cpu", seed=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert result["params"] > 0 and result["valid_ppl"] == pytest.approx(math.exp(result["valid_loss"]))


def test_user_errors_are_one_line(smoke_run, tmp_path, error, data):
    cnn_arch = " ".join(["0"] * 40)
    tiny = data("ptb-tiny")
    assert "not an RNN cell" in error(["train", "--task", "ptb", "--arch", cnn_arch, "--data-dir", tiny, "--dry-run"])
    assert "cnn" in error(["train", "--task", "cifar10-sample", "--arch", "0 " + REF_22, "--dry-run"])
    assert "--bptt 5000 is larger than the data" in error(
        ["train", "--task", "ptb", "--data-dir", tiny, "--bptt", "5000", "--output", tmp_path / "r"])
    assert "vocabulary" in error(["eval", "--checkpoint", smoke_run, "--data-dir", data("ptb")])
