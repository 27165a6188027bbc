"""The tensor-architecture step of the RNN cell (supernet.rnn_tensor) against the per-node reference step."""
import numpy as np
import pytest
import torch

from nao_ws.config.recipes import RnnSupernet
from supernet import rnn, rnn_tensor
from supernet.spaces import get_space

SPACE = get_space("rnn")


def run_cell(cell, step, x, h, arch, x_mask, h_mask):
    """Outputs and the gradients of a fixed weighting of them, w.r.t. the inputs and every parameter."""
    cell.step = step
    cell.zero_grad(set_to_none=True)
    x, h = x.clone().requires_grad_(), h.clone().requires_grad_()
    y = cell(x, h, arch, x_mask, h_mask)
    (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    grads = {n: p.grad.clone() for n, p in cell.named_parameters() if p.grad is not None}
    return y.detach(), x.grad, h.grad, grads


@pytest.mark.parametrize("output", rnn.CELL_OUTPUTS)
def test_tensor_step_equals_the_per_node_step_on_20_architectures(output):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cell = rnn.SharedCell(6, 6).double()
    cell.output = output
    depths = set()
    for i in range(20):
        arch = SPACE.sample(rng)
        depths.add(len(rnn_tensor.plan(arch).levels))
        x, h = torch.randn(5, 3, 6, dtype=torch.double), torch.randn(3, 6, dtype=torch.double)
        x_mask = torch.rand(3, 6, dtype=torch.double).round() * 2
        h_mask = None if i % 4 == 0 else torch.rand(3, 6, dtype=torch.double).round() * 2
        ref = run_cell(cell, "per-node", x, h, arch, x_mask, h_mask)
        got = run_cell(cell, "tensor", x, h, arch, x_mask, h_mask)
        for a, b in zip(ref[:3], got[:3]):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
        assert got[3].keys() == ref[3].keys()
        for name in ref[3]:
            torch.testing.assert_close(got[3][name], ref[3][name], rtol=1e-10, atol=1e-12)
    assert len(depths) >= 3  # shallow and deep cells alike


@pytest.mark.parametrize("output", rnn.CELL_OUTPUTS)
def test_tensor_step_without_gradients_and_in_float32(output):
    """Inference (scoring) keeps one time step of buffers; float32 agrees up to rounding."""
    torch.manual_seed(1)
    model = rnn.build_lm(40, RnnSupernet(emb_size=8, cell_output=output, **dict.fromkeys(rnn.DROPOUTS, 0.0)))
    tokens = torch.randint(0, 40, (9, 3))
    for arch in [SPACE.sample(np.random.default_rng(s)) for s in range(4)]:
        out = {}
        for step in ("per-node", "tensor"):
            model.cell.step = step
            with torch.inference_mode():
                out[step] = model(tokens, model.init_hidden(3), arch)[0]
        torch.testing.assert_close(out["tensor"], out["per-node"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("step", ["tensor", "per-node"])
def test_an_sgd_step_updates_only_the_weights_the_architecture_uses(step):
    torch.manual_seed(0)
    cfg = RnnSupernet(emb_size=8)
    model = rnn.build_lm(30, cfg)
    model.cell.step = step
    opt = rnn.make_optimizer(model, cfg.lr, cfg.weight_decay)
    data = torch.randint(0, 30, (12, 4))
    arch = SPACE.sample(np.random.default_rng(5))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = rnn.train_step(model, opt, rnn.Window(data[:-1], data[1:], 1.0), model.init_hidden(4), arch,
                            tar=cfg.tar, grad_clip=cfg.grad_clip)
    assert result.finite
    used = {f"cell.node_weights.{rnn.SharedCell.key(k, p, a)}" for k, (p, a) in enumerate(arch.nodes, 1)}
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == used | {"embedding.weight", "bias", "cell.w0"}


def test_plan_orders_nodes_by_depth_and_activation():
    arch = SPACE.sample(np.random.default_rng(3))
    p = rnn_tensor.plan(arch)
    slot = {0: 0, **{k: i + 1 for i, k in enumerate(p.order)}}
    assert sorted(p.order) == list(range(1, 12))
    for lv in p.levels:
        nodes = p.order[lv.start - 1:lv.stop - 1]
        assert all(slot[arch.nodes[k - 1][0]] < lv.start for k in nodes)  # parents come earlier
        assert [arch.nodes[k - 1][1] for k in nodes] == sorted(arch.nodes[k - 1][1] for k in nodes)
        assert [a for a, i, j in lv.runs for _ in range(i, j)] == [arch.nodes[k - 1][1] for k in nodes]
    assert sorted(p.loose) == sorted(slot[k] for k in SPACE.loose_ends(arch))


def test_tensor_step_trains_like_the_per_node_step():
    """Three SGD steps with dropout: the same masks (same seed) give the same losses and weights."""
    losses = {}
    for step in ("per-node", "tensor"):
        torch.manual_seed(0)
        cfg = RnnSupernet(emb_size=8)
        model = rnn.build_lm(30, cfg)
        model.cell.step = step
        opt = rnn.make_optimizer(model, cfg.lr, cfg.weight_decay)
        data = torch.randint(0, 30, (31, 4))
        hidden, out = model.init_hidden(4), []
        for i, arch in enumerate(SPACE.sample(np.random.default_rng(s)) for s in range(3)):
            w = rnn.Window(data[10 * i:10 * i + 10], data[10 * i + 1:10 * i + 11], 10 / 35)
            r = rnn.train_step(model, opt, w, hidden, arch, tar=cfg.tar, grad_clip=cfg.grad_clip)
            hidden = r.hidden
            out.append(r.loss)
        losses[step] = (out, model.cell.w0.detach().clone())
    np.testing.assert_allclose(losses["tensor"][0], losses["per-node"][0], rtol=1e-5)
    torch.testing.assert_close(losses["tensor"][1], losses["per-node"][1], rtol=1e-4, atol=1e-6)
