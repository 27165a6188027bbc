"""The NAS-Bench-201 weight-sharing supernet: it computes the sampled cell and trains only that path, weight
decay and momentum on unsampled weights as chosen, the BN scoring modes, how its search samples and scores, and
its one-line errors (its runs and resume: the search matrix in test_search_supernet.py)."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nao_ws.data.batches import fixed_batches
from nao_ws.data.images import load_images
from nao_ws.search.sources.supernet import SupernetSource
from supernet import cnn, nb201, optim
from supernet.spaces import get_space

SP = get_space("nb201")
# conv 3x3, conv 1x1, pool, skip, none; node 2 a zero node (both its edges none)
CELLS = ["|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
         "|nor_conv_1x1~0|+|none~0|none~1|+|nor_conv_3x3~0|skip_connect~1|nor_conv_3x3~2|",
         "|avg_pool_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|"]
FAST = ["search", "--task", "cifar10", "--space", "nb201", "--preset", "smoke", "--pool-size", "6",
        "--new-per-iter", "3", "--random-per-iter", "1", "--seeds", "3", "--no-progress"]


@pytest.fixture(scope="module")
def images():
    """Real CIFAR-10 images (the bundled sample), normalised: (train batches, dev batches)."""
    data = load_images("cifar10-sample", purpose="search")
    train = fixed_batches(data.train, 16, data.mean, data.std, "cpu", limit=32)
    dev = fixed_batches(data.valid, 20, data.mean, data.std, "cpu", limit=40)
    return train, dev


def supernet(seed=0):
    torch.manual_seed(seed)
    return nb201.Supernet(layers=1, channels=4)


def test_supernet_computes_the_standalone_network_of_the_sampled_cell(images):
    (x, _), _ = images[0]
    model = supernet()
    for text in CELLS:
        arch = SP.parse(text)
        net = nb201.Nb201Network.from_supernet(model, arch)
        assert set(dict(net.named_parameters())) < set(dict(model.named_parameters()))
        assert model.arch_parameters(arch) == sum(p.numel() for p in net.parameters())
        net.train()  # batch statistics in both
        torch.testing.assert_close(model(x, arch)[0], net(x)[0], rtol=0, atol=0)


def test_a_step_trains_only_the_sampled_ops(images):
    (x, y), _ = images[0]
    model, arch = supernet(), SP.parse(CELLS[2])  # every edge of it reaches the output
    used = set(dict(nb201.Nb201Network.from_supernet(model, arch).named_parameters()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = optim.sgd(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    r = cnn.train_step(model, opt, x, y, arch, grad_clip=5.0)
    assert r.finite
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == used  # every weight of the path moves, nothing else does
    assert "cells.0.edges.2.nor_conv_3x3.0.weight" in changed and "cells.0.edges.2.nor_conv_1x1.0.weight" not in changed


@pytest.mark.parametrize("unsampled", ["skip", "decay"])
def test_unsampled_weights_decay_only_when_asked(images, unsampled):
    """skip: weights off the path keep their values and get no momentum; decay: every step shrinks them by
    lr x weight decay (reference §3.1, as both references) and keeps a momentum buffer; a non-finite step changes
    nothing either way (fused SGD skips it on the device)."""
    (x, y), _ = images[0]
    model = supernet()
    off = dict(model.named_parameters())["cells.0.edges.5.nor_conv_3x3.0.weight"]  # CELLS[0] has none on edge 5
    lr, wd = 0.1, 0.01
    opt = optim.sgd(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    start = off.detach().clone()
    cnn.train_step(model, opt, x, y, SP.parse(CELLS[0]), grad_clip=5.0, unsampled=unsampled)
    if unsampled == "skip":
        assert torch.equal(off, start) and off not in opt.state and off.grad is None
    else:
        torch.testing.assert_close(off.detach(), start * (1 - lr * wd))
        assert torch.equal(opt.state[off]["momentum_buffer"], wd * start)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = cnn.train_step(model, opt, x * float("nan"), y, SP.parse(CELLS[0]), grad_clip=5.0, unsampled=unsampled)
    assert not r.finite
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_batch_scoring_uses_the_scoring_batch_statistics(images):
    _, dev = images
    model, arch = supernet(), SP.parse(CELLS[1])
    got = cnn.score(model, [arch], dev)[0]
    model.train()  # the supernet's BNs always use batch statistics; no dropout or drop-path here
    with torch.no_grad():
        correct = sum((model(x, arch)[0].argmax(1) == y).sum().item() for x, y in dev)
    assert got.acc == pytest.approx(correct / 40)
    halves = [(x[:10], y[:10]) for x, y in dev] + [(x[10:], y[10:]) for x, y in dev]
    assert cnn.score(model, [arch], halves)[0].loss != pytest.approx(got.loss)  # other batches, other statistics


def test_recalibrated_scoring_measures_each_cell_and_leaves_nothing_behind(images):
    calib, dev = images
    model = supernet()
    for _ in range(3):  # a little training, so that BN statistics matter
        opt = optim.sgd(model.parameters(), lr=0.1, momentum=0.9)
        for text in CELLS:
            cnn.train_step(model, opt, *calib[0], SP.parse(text), grad_clip=5.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    archs = [SP.parse(t) for t in CELLS]
    scores = cnn.score(model, archs, dev, calibration=calib)
    assert cnn.score(model, archs[::-1], dev, calibration=calib) == scores[::-1]  # independent of the order
    assert {k: v for k, v in model.state_dict().items()}.keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    halves = [(x[:10], y[:10]) for x, y in dev] + [(x[10:], y[10:]) for x, y in dev]
    # per image, not per batch
    np.testing.assert_allclose(cnn.score(model, archs, halves, calibration=calib), scores, rtol=1e-5)
    assert scores != cnn.score(model, archs, dev)
    for arch, s in zip(archs, scores):  # = the standalone network with running statistics of the calibration images
        net = nb201.Nb201Network.from_supernet(model, arch)
        for bn in net.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.momentum = None
        with torch.no_grad():
            for x, _ in calib:
                net(x)
        assert cnn.score(net, [arch], dev)[0].loss == pytest.approx(s.loss, rel=1e-5)


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_score_metric_ranks_the_pool(metric, tmp_path, cli, jsonl):
    """--score-metric: every pool score is the accuracy, or minus the loss, of the same scoring images, and the
    best cell is the best by it."""
    run = tmp_path / metric
    code, _, err = cli(FAST + ["--epochs", "1", "--eval-every", "1", "--rerank-top", "0", "--score-metric", metric,
                               "--output", run])
    assert code == 0, err
    pool = jsonl(run / "pool.jsonl")
    want = [r["valid_acc"] if metric == "accuracy" else -r["valid_loss"] for r in pool]
    assert [r["score"] for r in pool] == want and len(set(want)) > 1
    assert json.loads((run / "best.json").read_text())["score"] == max(want)


@pytest.mark.parametrize("sampling", ["uniform", "space"])
def test_sampling_draws_from_the_pool_or_the_whole_space(sampling):
    """--sampling uniform trains only the pool's cells; --sampling space draws any cell of the space."""
    source = SupernetSource.__new__(SupernetSource)  # the sampler only: no supernet, no data
    source.cfg, source.space, source.sizes = SimpleNamespace(sampling=sampling), SP, {}
    rng = np.random.default_rng(0)
    pool = [SP.sample(rng) for _ in range(10)]
    pick = source.sampler(pool, rng)
    outside = sum(pick().ops not in {a.ops for a in pool} for _ in range(200))
    assert outside == 0 if sampling == "uniform" else outside > 150, outside


def test_balanced_sampling_draws_in_proportion_to_parameter_counts():
    model = supernet()
    source = SupernetSource.__new__(SupernetSource)
    source.cfg, source.space, source.sizes = SimpleNamespace(sampling="balanced"), SP, {}
    source.supernet = SimpleNamespace(arch_size=model.arch_parameters)
    pool = [SP.make([3] * 6), SP.make([0] * 6)]
    pick = source.sampler(pool, np.random.default_rng(0))
    drawn = sum(pick() == pool[0] for _ in range(2000)) / 2000
    sizes = [model.arch_parameters(a) for a in pool]
    assert drawn == pytest.approx(sizes[0] / sum(sizes), abs=0.03)


def test_balanced_sampling_follows_parameter_counts():
    model = supernet()
    archs = [SP.make([3] * 6), SP.parse(CELLS[0]), SP.parse(CELLS[2]), SP.make([0] * 6)]
    sizes = [model.arch_parameters(a) for a in archs]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4  # six 3x3 > two 3x3 + a 1x1 > ... > none
    assert sizes[-1] == sum(p.numel() for p in nb201.Nb201Network(archs[-1], 1, 4).parameters())


@pytest.mark.parametrize("args,needle", [
    (["--task", "cifar10", "--space", "nb201", "--score-bn", "running"], "--score-bn 'running' is unknown"),
    (["--task", "cifar10", "--space", "nb201", "--unsampled", "sometimes"], "--unsampled 'sometimes' is unknown"),
    (["--task", "cifar10", "--space", "nb201", "--score-metric", "top5"], "--score-metric 'top5' is unknown"),
    (["--task", "cifar10", "--sampling", "params"], "--sampling 'params' is unknown"),
    (["--task", "ptb", "--sampling", "balanced"], "every rnn cell"),
    (["--task", "cifar10", "--space", "nb201", "--aux-weight", "0.4"], "--aux-weight does not apply"),
    (["--task", "ptb", "--space", "nb201"], "searches the rnn space"),
])
def test_bad_options_are_one_line_errors(args, needle, cli, capsys, tmp_path):
    code, _, err = cli(["search", *args, "--output", tmp_path / "x"], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()
