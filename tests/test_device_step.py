"""Training steps that never wait for the device: the skip of a non-finite step is decided by fused SGD
(supernet.optim), and the search loop reads step results in batches."""
import collections
import math

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from nao_ws.config.options import resolve
from nao_ws.config.recipes import RnnSupernet
from nao_ws.monitor import Monitor
from nao_ws.search import options
from nao_ws.search.sources.supernet import SupernetSource
from nao_ws.train import trainer as training
from supernet import cnn, optim, rnn
from supernet.spaces import get_space


def test_fused_sgd_skips_a_non_finite_first_and_later_step_with_momentum():
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    opt = optim.sgd([p, q], lr=0.1, momentum=0.9, weight_decay=0.1)
    p.grad = torch.full((3,), float("nan"))
    optim.step_if_finite(opt, torch.tensor(False))  # a skipped first step leaves no garbage momentum
    assert torch.equal(p, torch.ones(3)) and p.grad is None
    p.grad = torch.ones(3)
    optim.step_if_finite(opt, torch.tensor(True))
    want = 1 - 0.1 * (1 + 0.1)  # buffer = g + wd p on the first real step, as torch's own SGD
    torch.testing.assert_close(p.detach(), torch.full((3,), want))
    buf = opt.state[p]["momentum_buffer"].clone()
    assert torch.equal(q, torch.ones(2)) and "momentum_buffer" not in opt.state[q]  # no gradient: untouched
    p.grad = torch.full((3,), float("inf"))
    optim.step_if_finite(opt, torch.tensor(False))
    torch.testing.assert_close(p.detach(), torch.full((3,), want))
    assert torch.equal(opt.state[p]["momentum_buffer"], buf) and not hasattr(opt, "found_inf")


def test_cnn_step_with_fused_sgd_skips_on_the_device_and_returns_tensors():
    torch.manual_seed(0)
    net = cnn.Supernet("cnn-ws", layers=1, channels=4)
    arch = get_space("cnn-ws").sample(np.random.default_rng(0))
    opt = optim.sgd(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    r = cnn.train_step(net, opt, x, y, arch, grad_clip=5.0, sync=False)
    assert isinstance(r.loss, torch.Tensor) and bool(r.finite)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    bufs = {id(p): s["momentum_buffer"].clone() for p, s in opt.state.items()}
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    r = cnn.train_step(net, opt, bad, y, arch, grad_clip=5.0, sync=False)
    assert not bool(r.finite)
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert all(torch.equal(s["momentum_buffer"], bufs[id(p)]) for p, s in opt.state.items())


def test_rnn_step_without_sync_gives_device_values():
    torch.manual_seed(0)
    model = rnn.build_lm(20, RnnSupernet(emb_size=8))
    opt = rnn.make_optimizer(model, 0.5, 1e-4)
    data = torch.randint(0, 20, (9, 3))
    arch = get_space("rnn").sample(np.random.default_rng(1))
    window = rnn.Window(data[:-1], data[1:], 8 / 35)
    r = rnn.train_step(model, opt, window, model.init_hidden(3), arch, tar=1e-3, grad_clip=10.0, sync=False)
    assert isinstance(r.loss, torch.Tensor) and isinstance(r.finite, torch.Tensor) and bool(r.finite)
    with torch.no_grad():
        model.cell.w0[0, 0] = float("nan")
    r = rnn.train_step(model, opt, window, r.hidden, arch, tar=1e-3, grad_clip=10.0, sync=False)
    assert not bool(r.finite) and torch.equal(r.hidden, torch.zeros(3, 8))
    assert torch.isnan(model.cell.w0[0, 0]) and torch.isfinite(model.cell.w0.flatten()[1:]).all()


def test_amp_step_runs_the_cell_in_float32():
    """bf16 autocast (run here on CPU) covers the softmax; the recurrent cell stays float32."""
    torch.manual_seed(0)
    model = rnn.build_lm(20, RnnSupernet(emb_size=8))
    opt = rnn.make_optimizer(model, 0.5, 1e-4)
    data = torch.randint(0, 20, (9, 3))
    arch = get_space("rnn").sample(np.random.default_rng(1))
    window = rnn.Window(data[:-1], data[1:], 1.0)
    r = rnn.train_step(model, opt, window, model.init_hidden(3), arch, tar=1e-3, grad_clip=10.0, amp=True)
    assert r.finite and r.hidden.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, last, raw = model(data, model.init_hidden(3), arch)
    assert logits.dtype == torch.bfloat16 and raw.dtype == torch.float32


def test_steps_are_judged_in_order_in_batches(monkeypatch):
    monkeypatch.setattr(training, "SYNC_EVERY", 4)
    steps = training.EpochStats(max_nan_steps=2)
    for _ in range(3):
        steps.add(torch.tensor(True), torch.tensor(2.0), torch.tensor(0.5))
    assert steps.n == 0  # not read yet
    steps.add(False, float("nan"))  # the fourth step: a batch of four is read
    assert (steps.n, steps.skipped, steps.run) == (3, 1, 1)
    steps.add(torch.tensor(False), torch.tensor(float("nan")))
    steps.add(torch.tensor(True), torch.tensor(4.0), torch.tensor(1.0))  # a finite step ends the run
    assert steps.means() == pytest.approx({"loss": 2.5, "acc": 0.625, "nan_skipped": 2})
    for _ in range(2):
        steps.add(torch.tensor(False), torch.tensor(float("nan")))
    steps.add(torch.tensor(False), torch.tensor(float("nan")))
    with pytest.raises(training.Diverged, match="3 non-finite"):
        steps.add(torch.tensor(True), torch.tensor(1.0))


@pytest.mark.parametrize("args,flag", [
    (["--task", "cifar10", "--channels-last"], "--channels-last"),
    (["--task", "ptb", "--amp"], "--amp"),
    (["--task", "ptb", "--tf32"], "--tf32"),
    (["--task", "cifar10", "--space", "cnn", "--channels-last"], "--channels-last"),
])
def test_cuda_only_flags_are_one_line_errors_elsewhere(args, flag, cli, capsys, tmp_path):
    code, _, err = cli(["search", *args, "--preset", "smoke", "--device", "cpu", "--output", tmp_path / "x"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{flag} is " in err and "needs CUDA" in err
    assert not (tmp_path / "x").exists()


# Every way Python code can read a tensor's value on the host; on CUDA each one waits for the device.
HOST_READS = {"tolist", "item", "__bool__", "__float__", "__int__", "__index__", "numpy", "__array__", "cpu",
              "nonzero", "masked_select", "unique", "repeat_interleave"}


class HostReads(TorchFunctionMode):
    """Counts the host reads of tensor values by name. On CPU they cost nothing, so only counting finds them."""

    def __init__(self):
        super().__init__()
        self.reads: collections.Counter = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.reads[name] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("task, space", [("cifar10", "cnn-ws"), ("cifar10", "nb201"), ("ptb", "rnn")])
def test_a_search_epoch_reads_the_device_once_per_batch_of_steps(task, space, monkeypatch, data):
    """The whole training epoch of a search (data, sampling, steps, bookkeeping) reads values on the host only
    where EpochStats reads a batch of step results, in one transfer; scoring reads once per chunk."""
    cls, presets, base = options.config_for(task, space, None)
    extra = {"data_dir": str(data("ptb-tiny"))} if task == "ptb" else {}
    cfg = resolve(cls, presets, "smoke", None, {"task": task, "device": "cpu", **extra}, base=base)
    source = SupernetSource(cfg)
    rng = np.random.default_rng(0)
    pool = [source.space.sample(rng) for _ in range(6)]
    monkeypatch.setattr(training, "SYNC_EVERY", 3)
    steps = []
    add = training.EpochStats.add
    monkeypatch.setattr(training.EpochStats, "add", lambda self, *a: steps.append(a) or add(self, *a))
    with HostReads() as mode:
        source.advance(0, pool, rng, Monitor(None, progress=False))
    assert len(steps) > 3 and all(isinstance(v, torch.Tensor) for step in steps for v in step)
    assert mode.reads == {"tolist": math.ceil(len(steps) / 3)}, mode.reads
    with HostReads() as mode:
        list(source.score(pool[:4], Monitor(None, progress=False)))
    assert mode.reads == {"tolist": 1}, mode.reads


def test_a_final_cnn_training_epoch_reads_the_device_once_per_batch_of_steps(monkeypatch):
    """`nao-ws train` (and every standalone candidate) steps with fused SGD, without waiting for the device."""
    from nao_ws.data.images import load_images
    from nao_ws.train.cnn import CnnTrainer
    from nao_ws.train.options import CnnTrainConfig

    data = load_images("cifar10-sample", purpose="search")  # 450 training images
    cfg = CnnTrainConfig(task="cifar10-sample", layers=1, channels=4, epochs=1, batch_size=45, cutout=0)
    trainer = CnnTrainer(get_space("cnn-ws").sample(np.random.default_rng(0)), data, cfg, torch.device("cpu"), seed=0)
    monkeypatch.setattr(training, "SYNC_EVERY", 3)
    with HostReads() as mode:
        record = trainer.train_epoch()
    assert mode.reads == {"tolist": math.ceil(len(trainer.batches) / 3)}, mode.reads
    assert record["skipped_steps"] == 0 and record["train_loss"] > 0
