"""The C kernels behind ops.BatchNorm2d and ops.DepthwiseConv2d against PyTorch's own ops (in float64),
their running statistics, when they apply, and the fallback when they cannot be built."""
import shutil
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from supernet import cpu_kernels, ops

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernels are built on Linux only")


def channels_last(*shape, offset=0.0, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale + offset).contiguous(memory_format=torch.channels_last)


def close(a, b, tol):
    """Relative to the largest magnitude of b (the float64 reference)."""
    return (a.double() - b).abs().max().item() <= tol * max(b.abs().max().item(), 1e-12)


def test_the_kernels_build_where_a_compiler_is():
    assert shutil.which("cc"), "this test needs the C compiler the product uses"
    assert cpu_kernels.available()


def drop_path_factors(n, seed=3):
    """Drop-path's per-sample factors: some samples dropped (0), the others 1 / keep."""
    mask = torch.rand(n, 1, 1, 1, generator=torch.Generator().manual_seed(seed)) < 0.6
    mask[0], mask[-1] = False, True
    return mask.float() / 0.6


@pytest.mark.parametrize("relu, scaled", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("shape, offset", [((4, 20, 8, 8), 0.0), ((3, 7, 5, 6), 0.0), ((2, 33, 3, 3), 0.0),
                                           ((4, 20, 8, 8), 200.0)])  # a mean far above the spread
def test_batch_norm_matches_pytorch(shape, offset, relu, scaled):
    """Also with drop-path's factors fused in, where 32-row blocks lie inside one sample (8x8) and where they
    straddle two (5x6, 3x3)."""
    x = channels_last(*shape, offset=offset, scale=3.0).requires_grad_()
    c = shape[1]
    w = (torch.rand(c) + 0.5).requires_grad_()
    b = torch.randn(c).requires_grad_()
    grad = channels_last(*shape, seed=1)
    factors = drop_path_factors(shape[0]) if scaled else None
    assert cpu_kernels.applies(x)
    y, mean, var = cpu_kernels.batch_norm(x, w, b, 1e-5, relu, factors)
    got = torch.autograd.grad(y, (x, w, b), grad)
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    ref = F.batch_norm(x64, None, None, w64, b64, True, 0.0, 1e-5)
    ref = F.relu(ref) if relu else ref
    ref = ref * factors.double() if scaled else ref
    want = torch.autograd.grad(ref, (x64, w64, b64), grad.double())
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert close(y, ref, 1e-5)
    assert close(mean, x64.mean((0, 2, 3)), 1e-6)
    assert close(var, x64.var((0, 2, 3), unbiased=False), 1e-4)
    if relu:
        assert (y == 0).any() and (y > 0).any()
    for g, r, name in zip(got, want, ("x", "weight", "bias")):
        assert close(g, r, 1e-4), name


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_module_keeps_running_statistics_like_pytorch(momentum):
    ours = ops.BatchNorm2d(12, momentum=momentum)
    theirs = nn.BatchNorm2d(12, momentum=momentum).double()  # the float64 reference
    theirs.load_state_dict(ours.state_dict())
    for seed in range(3):
        x = channels_last(5, 12, 4, 4, offset=1.0, scale=2.0, seed=seed)
        assert close(ours(x), theirs(x.double()), 1e-5)
    for name, buffer in theirs.named_buffers():
        assert torch.allclose(getattr(ours, name).to(buffer.dtype), buffer, rtol=1e-5, atol=1e-6), name
    ours.eval(), theirs.eval()  # running statistics now: PyTorch's path
    x = channels_last(5, 12, 4, 4, seed=9)
    assert ours(x).grad_fn.name() == "NativeBatchNormBackward0"
    assert close(ours(x), theirs(x.double()), 1e-5)


def test_batch_norm_module_falls_back_where_the_kernels_do_not_apply():
    bn = ops.BatchNorm2d(6)
    nchw = torch.randn(4, 6, 5, 5)
    assert not cpu_kernels.applies(nchw)
    assert not cpu_kernels.applies(nchw.to(memory_format=torch.channels_last).double())
    assert torch.allclose(bn(nchw), F.batch_norm(nchw, None, None, bn.weight, bn.bias, True, 0.0, 1e-5), atol=1e-6)
    fused = ops.BatchNorm2d(6, relu=True)
    assert torch.allclose(fused(nchw), F.relu(F.batch_norm(nchw, None, None, fused.weight, fused.bias, True, 0.0,
                                                           1e-5)), atol=1e-6)
    with pytest.raises(ValueError, match="more than 1 value per channel"):  # PyTorch's own message
        bn(torch.randn(1, 6, 1, 1).contiguous(memory_format=torch.channels_last))


def test_batch_norm_module_scales_samples_on_either_path():
    """``BatchNorm2d(x, scale)``: the kernels' fused multiply and PyTorch's path followed by a multiply agree,
    in value and gradient; a scale of the wrong size is refused."""
    fused = ops.BatchNorm2d(6, relu=True, track_running_stats=False)
    factors = drop_path_factors(4)
    x = channels_last(4, 6, 5, 5).requires_grad_()
    results = []
    for on in (True, False):
        with cpu_kernels.enabled(on):
            y = fused(x, factors)
            assert (y.grad_fn.name() == "_BatchNormBackward") == on
            results.append((y, *torch.autograd.grad(y, (x, fused.weight, fused.bias), channels_last(4, 6, 5, 5))))
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.all(results[0][0][0] == 0)  # sample 0 dropped
    with pytest.raises(ValueError, match="one float32 cpu factor per sample"):
        fused(x, factors[:3])


@pytest.mark.parametrize("kernel, shape", [(5, (3, 20, 9, 7)), (7, (2, 5, 6, 6)), (5, (2, 17, 2, 3)),
                                           (5, (5, 6, 8, 8)), (5, (2, 20, 32, 32))])  # strips of 4 + 1; of 1
def test_depthwise_conv_matches_pytorch(kernel, shape):
    x = channels_last(*shape).requires_grad_()
    c = shape[1]
    w = torch.randn(c, 1, kernel, kernel).requires_grad_()
    conv = ops.DepthwiseConv2d(c, kernel, 1)
    with torch.no_grad():
        conv.weight.copy_(w)
    y = conv(x)
    assert y.grad_fn.name().startswith("_DepthwiseConv")
    grad = channels_last(*y.shape, seed=2)
    got = torch.autograd.grad(y, (x, conv.weight), grad)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.conv2d(x64, w64, None, 1, kernel // 2, 1, c)
    want = torch.autograd.grad(ref, (x64, w64), grad.double())
    assert close(y, ref, 1e-5)
    for g, r, name in zip(got, want, ("x", "weight")):
        assert g.shape == r.shape
        assert close(g, r, 1e-5), name


def test_depthwise_kernel_3x3_and_unsupported_sizes():
    """3x3 (which the ops leave to oneDNN) is right too; other kernel sizes are refused in one line."""
    x = channels_last(3, 9, 7, 5).requires_grad_()
    w = torch.randn(9, 1, 3, 3).requires_grad_()
    grad = channels_last(3, 9, 7, 5, seed=2)
    got = torch.autograd.grad(cpu_kernels.depthwise_conv(x, w, 1), (x, w), grad)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    want = torch.autograd.grad(F.conv2d(x64, w64, None, 1, 1, 1, 9), (x64, w64), grad.double())
    for g, r in zip(got, want):
        assert close(g, r, 1e-5)
    with pytest.raises(ValueError, match="3x3, 5x5 or 7x7 kernels, got 9"):
        cpu_kernels.depthwise_conv(x, torch.randn(9, 1, 9, 9, requires_grad=True), 4)


def test_depthwise_conv_uses_pytorch_at_stride_2_and_3x3():
    x = channels_last(2, 8, 6, 6).requires_grad_()
    assert "_DepthwiseConv" not in ops.DepthwiseConv2d(8, 5, 2)(x).grad_fn.name()
    assert "_DepthwiseConv" not in ops.DepthwiseConv2d(8, 3, 1)(x).grad_fn.name()


@pytest.mark.parametrize("seed", [4, 5])
def test_a_training_step_is_as_accurate_as_with_pytorchs_kernels(seed):
    """Supernet gradients with the kernels and with PyTorch's own (both float32) against float64: the kernels
    may not be less accurate. (A small network at batch 8 is ill-conditioned enough that both float32 paths
    can be 1e-2 off, so the bar is PyTorch's own error, not a fixed tolerance.)"""
    import numpy as np

    from supernet import cnn
    from supernet.spaces import get_space

    arch = get_space("cnn-ws").sample(np.random.default_rng(seed))
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))

    def grads(kernels, dtype):
        torch.manual_seed(0)
        model = cnn.Supernet("cnn-ws", 1, 8, 10).to(dtype)
        with cpu_kernels.enabled(kernels):
            F.cross_entropy(model(x.to(dtype), arch)[0], y).backward()
        return {n: p.grad.double() for n, p in model.named_parameters() if p.grad is not None}

    exact = grads(False, torch.float64)
    largest = max(g.abs().max().item() for g in exact.values())

    def error(got):
        assert got.keys() == exact.keys()
        return max((got[n] - exact[n]).abs().max().item() for n in exact) / largest

    assert error(grads(True, torch.float32)) <= 2 * error(grads(False, torch.float32)) + 1e-6


def test_a_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_kernels, "_tried", False)
    monkeypatch.setattr(cpu_kernels, "_lib", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="NAO_WS_CPU_KERNELS=0"):
        assert not cpu_kernels.available()
    assert not cpu_kernels.applies(channels_last(2, 4, 3, 3))
    bn = ops.BatchNorm2d(4)
    x = channels_last(2, 4, 3, 3)
    assert torch.allclose(bn(x), F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, 1e-5), atol=1e-6)


def test_the_switch_turns_them_off(monkeypatch):
    monkeypatch.setattr(cpu_kernels, "_tried", False)
    monkeypatch.setattr(cpu_kernels, "_lib", None)
    monkeypatch.setenv(cpu_kernels.ENV_SWITCH, "0")
    assert not cpu_kernels.available()


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape", [(2, 20, 7, 9), (3, 5, 8, 8), (1, 3, 1, 2), (2, 4, 2, 1)])
def test_3x3_pools_match_pytorch(kind, shape, scaled):
    """Also with drop-path's per-sample factors multiplied in."""
    # integers: many ties, which max pooling must break as PyTorch does (the first maximum wins)
    x = channels_last(*shape).mul(2).round().requires_grad_()
    factors = drop_path_factors(shape[0]) if scaled else None
    pool = ops.Pool(kind, 3, 1)
    y = pool(x, factors)
    assert y.grad_fn.name().startswith("_MaxPool3" if kind == "max" else "_AvgPool3")
    grad = channels_last(*y.shape, seed=3)
    got = torch.autograd.grad(y, x, grad)[0]
    x64 = x.detach().double().requires_grad_()
    ref = F.max_pool2d(x64, 3, 1, 1) if kind == "max" else F.avg_pool2d(x64, 3, 1, 1, count_include_pad=False)
    ref = ref * factors.double() if scaled else ref
    want = torch.autograd.grad(ref, x64, grad.double())[0]
    assert y.shape == ref.shape and y.is_contiguous(memory_format=torch.channels_last)
    assert close(y, ref, 1e-6)
    assert close(got, want, 1e-6)
    with torch.no_grad():  # the inference path (no winning taps kept)
        assert close(pool(x, factors), ref, 1e-6)


def test_max_pool_keeps_nan_and_all_minus_infinity_windows_like_pytorch():
    x = channels_last(1, 2, 4, 4)
    x[0, 0, 1, 1] = float("nan")
    x[0, 1] = float("-inf")
    x.requires_grad_()
    y = ops.Pool("max", 3, 1)(x)
    ref = F.max_pool2d(x.detach(), 3, 1, 1)
    assert torch.equal(y.isnan(), ref.isnan()) and torch.equal(y[~y.isnan()], ref[~ref.isnan()])
    grad = torch.ones_like(y)
    x2 = x.detach().clone().requires_grad_()
    assert torch.equal(torch.autograd.grad(y, x, grad)[0], torch.autograd.grad(F.max_pool2d(x2, 3, 1, 1), x2, grad)[0])


def test_other_pools_use_pytorch():
    x = channels_last(2, 4, 6, 6).requires_grad_()
    factors = drop_path_factors(2)
    for kind, kernel, stride in [("max", 3, 2), ("avg", 3, 2), ("max", 2, 1), ("avg", 5, 1)]:
        pool = ops.Pool(kind, kernel, stride)
        assert not pool(x).grad_fn.name().startswith(("_MaxPool3", "_AvgPool3"))
        assert torch.equal(pool(x, factors), pool(x) * factors)


@pytest.mark.parametrize("pieces, shape", [(2, (3, 20, 5, 4)), (5, (2, 7, 3, 3))])
def test_relu_cat_matches_pytorch(pieces, shape):
    """A cell's ReLU'd output in one pass: value, NaN passing as in PyTorch's ReLU, and one contiguous gradient
    per piece."""
    xs = [channels_last(*shape, seed=s).requires_grad_() for s in range(pieces)]
    with torch.no_grad():
        xs[0][0, 0, 0, 0] = float("nan")
    y = ops.relu_cat(xs)
    assert y.grad_fn.name() == "_ReLUCatBackward"
    ref = F.relu(torch.cat([x.detach().double().requires_grad_() for x in xs], 1))
    torch.testing.assert_close(y.double(), ref, equal_nan=True)
    grad = channels_last(*y.shape, seed=9)
    got = torch.autograd.grad(y, xs, grad)
    want = torch.autograd.grad(F.relu(torch.cat(xs, 1)), xs, grad)
    for g, w in zip(got, want):
        assert g.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(g, w)


def test_relu_cat_falls_back_where_the_kernels_do_not_apply():
    nchw = [torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)]
    assert torch.equal(ops.relu_cat(nchw), F.relu(torch.cat(nchw, 1)))
    assert torch.equal(ops.relu_cat(nchw[:1]), F.relu(nchw[0]))
    cl = [channels_last(2, 3, 4, 4, seed=s).requires_grad_() for s in range(2)]
    assert ops.relu_cat(cl).grad_fn.name() == "_ReLUCatBackward"
    with cpu_kernels.enabled(False):
        assert ops.relu_cat(cl).grad_fn.name() == "ReluBackward0"
