"""Zero-cost proxies against values worked out by hand on tiny networks, ``nao-ws score --proxy``, and the
supernet variants of the ranking study: fair sampling, BN without scale and shift, few-shot supernets."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nao_ws.search import proxies
from supernet.spaces import get_space


class Tiny(nn.Module):
    """x [N, 1, 2, 2] -> 1x1 conv (weight a) -> ReLU -> flatten (4) -> linear W [2, 4] -> (logits, None)."""

    def __init__(self, a: float, w):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.fc = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(a)
            self.fc.weight.copy_(torch.tensor(w, dtype=torch.float32))

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(1)), None


W = [[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, 3.0, -0.5]]
X = torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]], [[[-1.0, 1.0], [0.5, -2.0]]]])
Y = torch.tensor([0, 1])


def test_params_and_flops_by_hand():
    net = Tiny(1.0, W)
    assert proxies.params(net, X, Y) == 1 + 8
    assert proxies.flops(net, X, Y) == 4 * 1 + 4 * 2  # 4 output pixels x 1 weight each; 4 x 2 for the linear


def test_synflow_by_hand():
    """All weights positive, input of ones: R = |a| sum|W|; dR/da = sum|W| and dR/dW = |a|, so the sum of
    theta x dR/dtheta is 2 |a| sum|W|."""
    net = Tiny(-0.5, W)
    assert proxies.synflow(net, X, Y) == pytest.approx(2 * 0.5 * np.abs(W).sum())


def test_snip_grad_norm_naswot_and_jacob_cov_by_hand():
    a = 1.0
    net = Tiny(a, W)
    got = proxies.one_pass(net, X, Y, proxies.PROXIES)
    h = np.maximum(a * X.numpy().reshape(2, 4), 0)  # the ReLU features
    z = h @ np.array(W).T
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    d = (p - np.eye(2)[Y.numpy()]) / 2  # dL/dz of the mean cross-entropy
    g_w = d.T @ h
    g_a = (d @ np.array(W) * (X.numpy().reshape(2, 4) > 0) * X.numpy().reshape(2, 4)).sum()
    assert got["snip"] == pytest.approx(abs(a * g_a) + np.abs(np.array(W) * g_w).sum(), rel=1e-5)
    assert got["grad_norm"] == pytest.approx(abs(g_a) + np.linalg.norm(g_w), rel=1e-5)
    codes = h > 0  # each image's ReLU code
    agree = int((codes[0] == codes[1]).sum())
    assert got["naswot"] == pytest.approx(math.log(4 * 4 - agree * agree))
    # the input Jacobian of the summed outputs: a x (column sums of W) where the ReLU is active
    jac = a * np.array(W).sum(0) * codes
    eig = np.linalg.eigvalsh(np.corrcoef(jac))
    assert got["jacob_cov"] == pytest.approx(-np.sum(np.log(eig + 1e-5) + 1 / (eig + 1e-5)), rel=1e-6)


def test_an_output_blind_to_its_input_ranks_last():
    space = get_space("nb201")
    cell = space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    got = proxies.score(cell, ["jacob_cov", "naswot", "synflow"], x, y, 10, seed=0)
    assert got["jacob_cov"] == -math.inf and got["synflow"] == 0.0


def test_proxy_scores_are_deterministic_for_a_seed(cli, capsys, tmp_path):
    cells = tmp_path / "cells.txt"
    cells.write_text("# two cells\n|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
                     "nor_conv_3x3~1|nor_conv_3x3~2|\n|avg_pool_3x3~0|+|skip_connect~0|none~1|+|none~0|"
                     "nor_conv_1x1~1|skip_connect~2|\n")
    args = ["score", "--proxy", "synflow,params,naswot", "--archs", cells, "--task", "cifar10-sample",
            "--proxy-batch", "8", "--no-progress"]
    runs = []
    for seed in ("0", "0", "1"):
        code, out, err = cli(args + ["--seed", seed], capsys)
        assert code == 0, err
        runs.append([json.loads(line) for line in out.splitlines()])
    assert runs[0] == runs[1] and runs[0] != runs[2]
    first = runs[0][0]
    assert first["line"] == 2 and first["score"] == first["synflow"] and set(first) >= {"params", "naswot"}
    assert runs[0][0]["params"] > runs[0][1]["params"]  # five convolutions against one


@pytest.mark.parametrize("args,needle", [
    (["--proxy", "synflow", "--run", "x"], "one of them"),
    ([], "one of them"),
    (["--proxy", "magic"], "unknown proxy 'magic'"),
    (["--proxy", "params", "--space", "cnn-ws"], "but --space is cnn-ws"),
    (["--proxy", "params", "--task", "cifar10-sample", "--proxy-batch", "100000"], "exceeds the"),
])
def test_proxy_errors_are_one_line(args, needle, cli, capsys, tmp_path):
    cells = tmp_path / "cells.txt"
    cells.write_text("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|\n")
    code, _, err = cli(["score", "--archs", cells, *args], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_fair_batches_train_every_op_of_every_decision_once():
    rng = np.random.default_rng(0)
    for name in ("nb201", "cnn-ws"):
        space = get_space(name)
        batch = space.fair_batch(rng)
        assert len(batch) == len(space.ops)
        values = np.array([a.to_list() for a in batch])
        for k, size in enumerate(space.decision_sizes()):
            if size == len(space.ops):
                assert sorted(values[:, k]) == list(range(size)), (name, k)


def _source(tmp_path, **flags):
    from nao_ws.config.options import resolve
    from nao_ws.search import options
    from nao_ws.search.sources.supernet import SupernetSource

    cls, presets, base = options.config_for("cifar10", "nb201", None)
    cfg = resolve(cls, presets, "smoke", None, {"task": "cifar10", "device": "cpu", **flags}, base=base)
    return SupernetSource(cfg)


def test_few_shot_copies_start_from_the_one_shot_weights_and_train_apart(tmp_path):
    from nao_ws.monitor import Monitor

    source = _source(tmp_path, few_shot_decision=3, few_shot_epoch=1, epochs=2, sampling="space")
    ws, rng, monitor = source.supernet, np.random.default_rng(0), Monitor(None, progress=False)
    ws.train_epoch(0, source.sampler([], rng), 1.0, monitor)
    one_shot = {k: v.clone() for k, v in ws.model.state_dict().items()}
    ws.split()
    assert len(ws.subnets) == 5
    for model, optimizer in ws.subnets:
        assert all(torch.equal(v, one_shot[k]) for k, v in model.state_dict().items())
        assert optimizer.state_dict()["state"].keys() == ws.optimizer.state_dict()["state"].keys()
    space = get_space("nb201")
    only = [space.from_list([0, 0, 0, 2, 0, 0])]  # every minibatch trains the copy of op 2 on edge 3
    ws.train_epoch(1, lambda: only[0], 1.0, monitor)
    changed = [any(not torch.equal(v, one_shot[k]) for k, v in m.state_dict().items()) for m, _ in ws.subnets]
    assert changed == [False, False, True, False, False]
    twin = _source(tmp_path, few_shot_decision=3, few_shot_epoch=1, epochs=2, sampling="space").supernet
    twin.load_state_dict(ws.state_dict())
    a = only[0]
    assert twin.score([a], monitor) == ws.score([a], monitor)


def test_a_supernet_without_bn_scale_and_shift(tmp_path):
    from supernet import nb201

    source = _source(tmp_path, bn_affine=False)
    model = source.supernet.model
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.weight is None and m.bias is None for m in bns)
    arch = get_space("nb201").from_list([3, 3, 1, 2, 0, 4])
    net = nb201.Nb201Network.from_supernet(model, arch)  # BN scales 1, shifts 0: the same function
    x = torch.randn(8, 3, 32, 32)
    model.eval(), net.train()
    with torch.no_grad():
        assert torch.allclose(model(x, arch)[0], net(x)[0], atol=1e-5)
