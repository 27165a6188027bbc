"""The CNN supernet, its ops and the final network (reference §3.1, §5.1, §6), on tiny sizes (N = 1, C = 4)."""
import numpy as np
import pytest
import torch

from supernet import cnn, ops
from supernet.nets import NASNetwork
from supernet.spaces import CNN_WS_OPS, NUM_NODES, get_space, parse_arch

LAYERS, CHANNELS = 1, 4


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return cnn.Supernet("cnn-ws", LAYERS, CHANNELS, aux=True)


def images(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def path_names(arch) -> set:
    """Parameter names of the final network of ``arch`` at the supernet's sizes: the sampled path."""
    with torch.device("meta"):
        net = NASNetwork(arch, LAYERS, CHANNELS, aux=True)
    return {name for name, _ in net.named_parameters()}


def grad_names(model, arch, seed=0) -> set:
    model.zero_grad(set_to_none=True)
    model.train()
    x, y = images(seed=seed)
    logits, aux = model(x, arch, progress=0.5)
    (torch.nn.functional.cross_entropy(logits, y) + torch.nn.functional.cross_entropy(aux, y)).backward()
    return {name for name, p in model.named_parameters() if p.grad is not None}


def covering_archs(op_names) -> list:
    """Every (node, branch, input, op) and every loose-end set member occurs in one of these archs."""
    sp = get_space("cnn-ws")
    archs = []
    for i in range(NUM_NODES + 1):
        for o in range(len(op_names)):
            cell = [(min(i, j + 1), o, min(i, j + 1), o) for j in range(NUM_NODES)]
            archs.append(sp.make(cell, cell))
    return archs


def test_only_the_sampled_path_gets_gradients(supernet):
    sp = get_space("cnn-ws")
    rng = np.random.default_rng(0)
    for k in range(24):
        arch = sp.sample(rng)
        assert grad_names(supernet, arch, seed=k) == path_names(arch)


def test_every_parameter_belongs_to_some_architecture(supernet):
    used = set()
    for arch in covering_archs(CNN_WS_OPS):
        used |= grad_names(supernet, arch)
    assert used == {name for name, _ in supernet.named_parameters()}


def test_supernet_computes_the_final_network_of_the_architecture(supernet):
    """Same cell output definition (concatenated loose ends) and same weights: identical logits."""
    rng = np.random.default_rng(1)
    x, _ = images(3)
    for arch in (get_space("cnn-ws").sample(rng) for _ in range(3)):
        net = NASNetwork.from_supernet(supernet, arch, drop_path_keep=1.0, head_keep=1.0)
        supernet.train()
        net.train()  # both BNs on batch statistics
        got, want = supernet(x, arch), net(x)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("space", ["cnn-ws", "cnn"])
def test_cell_output_shapes(space):
    """Normal cells keep the size, reduction cells halve it and double the channels; the output has one
    piece of the cell's channel count per loose end."""
    sp = get_space(space)
    rng = np.random.default_rng(2)
    torch.manual_seed(0)
    model = cnn.Supernet(space, LAYERS, CHANNELS, aux=True) if space == "cnn-ws" else None
    for _ in range(3):
        arch = sp.sample(rng)
        net = model if model is not None else NASNetwork(arch, LAYERS, CHANNELS, aux=True)
        shapes = []
        hooks = [c.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for c in net.cells]
        net.train()
        x, _ = images(2)
        logits, aux = net(x, arch) if model is not None else net(x)
        for h in hooks:
            h.remove()
        assert logits.shape == (2, 10) and aux.shape == (2, 10)
        size, c = 32, CHANNELS
        for k, cell in enumerate(net.cells):
            if cell.reduction:
                size, c = size // 2, 2 * c
            loose = sp.loose_ends(arch.reduce if cell.reduction else arch.normal)
            assert shapes[k] == (2, c * len(loose), size, size)
        assert [cell.reduction for cell in net.cells] == [False, True, False, True, False]


def test_scoring_is_deterministic_and_side_effect_free(supernet):
    sp = get_space("cnn-ws")
    rng = np.random.default_rng(3)
    archs = [sp.sample(rng) for _ in range(4)]
    batches = [images(6, seed=1), images(4, seed=2)]
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    supernet.train()
    first = cnn.score(supernet, archs, batches)
    again = cnn.score(supernet, archs[::-1], batches)[::-1]
    alone = cnn.score(supernet, archs[2:3], batches)
    assert first == again and alone[0] == first[2]
    assert supernet.training  # mode restored
    after = supernet.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not list(supernet.buffers())  # no running statistics to disturb
    for s in first:
        assert 0.0 <= s.acc <= 1.0 and np.isfinite(s.loss)


def test_score_matches_a_plain_forward_pass(supernet):
    arch = get_space("cnn-ws").sample(np.random.default_rng(4))
    x, y = images(8, seed=5)
    (s,) = cnn.score(supernet, [arch], [(x, y)])
    supernet.eval()
    with torch.no_grad():
        logits = supernet(x, arch)[0]
    supernet.train()
    assert s.acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert s.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


def test_drop_path_keep_schedule():
    assert ops.drop_path_keep(0.8, 0, 20, 0.0) == 1.0
    assert ops.drop_path_keep(0.8, 19, 20, 1.0) == pytest.approx(0.8)
    assert ops.drop_path_keep(0.8, 9, 20, 1.0) == pytest.approx(0.9)  # linear in depth
    assert ops.drop_path_keep(0.8, 19, 20, 0.5) == pytest.approx(0.9)  # linear in progress


def test_networks_apply_the_drop_path_schedule(monkeypatch):
    """Every branch of cell k but plain identities gets the keep probability of the schedule for
    (k, progress); none in eval mode."""
    arch = parse_arch("0 0 1 4 0 1 2 2 1 3 0 2 4 0 1 3 2 1 0 3 | 1 1 1 4 2 1 2 4 1 0 2 3 3 1 2 2 0 2 0 2")
    identity = CNN_WS_OPS.index("identity")
    net = NASNetwork(arch, LAYERS, CHANNELS, drop_path_keep=0.6)
    seen = []
    monkeypatch.setattr(ops, "drop_path_mask", lambda h, keep: seen.append(keep) or None)
    net.train()
    net(images(2)[0], progress=0.25)
    want = []
    for k, cell in enumerate(net.cells):
        nodes = arch.reduce if cell.reduction else arch.normal
        branches = [(i, op) for in1, op1, in2, op2 in nodes for i, op in ((in1, op1), (in2, op2))]
        plain = [op == identity and not (cell.reduction and i < 2) for i, op in branches]  # stride 2: FR
        want += [1.0 - (k + 1) / len(net.cells) * 0.25 * (1 - 0.6)] * plain.count(False)
    assert seen == pytest.approx(want)
    seen.clear()
    net.eval()
    net(images(2)[0], progress=0.25)
    assert seen == [1.0] * len(want)


def test_drop_path_zeroes_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(20000, 2, 3, 3)
    y = x * ops.drop_path_mask(x, 0.7)
    kept = (y[:, 0, 0, 0] != 0).float()
    assert kept.mean().item() == pytest.approx(0.7, abs=0.02)
    assert torch.all((y == 0) | torch.isclose(y, torch.tensor(1 / 0.7)))
    assert torch.equal(y.amax((1, 2, 3)), y.amin((1, 2, 3)))  # whole samples
    assert ops.drop_path_mask(x, 1.0) is None


@pytest.mark.parametrize("which", [(0,), (2, 0, 3)])
def test_factorized_reduce_is_two_offset_strided_convs(which):
    """Output and gradients match reference §1.1's definition: 1x1 stride-2 convs on the grid and on the grid shifted
    by one pixel, concatenated, then BN."""
    torch.manual_seed(0)
    fr = ops.FactorizedReduce(3, 8, track_stats=False, pieces=(0, 2, 3)).double()
    for p in fr.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(4, 3 * len(which), 6, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 8, 3, 3, dtype=torch.float64)
    got = fr(x, which)
    got_grads = torch.autograd.grad(got, [x, *fr.parameters()], g, allow_unused=True)
    wa, wb = fr.conv_a.weight(which), fr.conv_b.weight(which)
    want = fr.bn(torch.cat([torch.nn.functional.conv2d(x, wa, stride=2),
                            torch.nn.functional.conv2d(x[:, :, 1:, 1:], wb, stride=2)], 1))
    want_grads = torch.autograd.grad(want, [x, *fr.parameters()], g, allow_unused=True)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="even height and width"):
        fr(torch.randn(2, 3 * len(which), 5, 6, dtype=torch.float64), which)


def test_train_step_updates_only_the_path_and_refuses_non_finite_losses(supernet):
    sp = get_space("cnn-ws")
    arch = sp.sample(np.random.default_rng(5))
    opt = torch.optim.SGD(supernet.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    before = {k: v.clone() for k, v in supernet.named_parameters()}
    x, y = images(4, seed=6)
    r = cnn.train_step(supernet, opt, x, y, arch, grad_clip=5.0, aux_weight=0.4, progress=0.5)
    assert r.finite and np.isfinite(r.loss) and 0 <= r.acc <= 1
    changed = {k for k, p in supernet.named_parameters() if not torch.equal(p, before[k])}
    assert changed and changed <= path_names(arch)
    snapshot = {k: v.clone() for k, v in supernet.named_parameters()}
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    r = cnn.train_step(supernet, opt, bad, y, arch, grad_clip=5.0, aux_weight=0.4)
    assert not r.finite
    assert all(torch.equal(p, snapshot[k]) for k, p in supernet.named_parameters())


def test_wrong_space_is_refused(supernet):
    from supernet.spaces import SpaceError

    arch = get_space("cnn").sample(np.random.default_rng(0))
    with pytest.raises(SpaceError):
        supernet(images(2)[0], arch)
