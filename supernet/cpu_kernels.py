"""Faster CPU paths for batch norm (batch statistics), the depthwise-conv weight gradient, 3x3 pools and
the ReLU of a cell's concatenated output.

Why: on CPU, channels-last, at the supernet's sizes (20-80 channels), PyTorch's batch norm makes several
slow passes (forward and backward of a 64 x 20 x 32 x 32 map: about 8 ms on 2 cores, against 1.1 ms here,
which also fuses the ReLU that follows a sep-conv's first BN and drop-path's per-sample mask); oneDNN has no
fast kernel for the weight gradient of a 5x5 depthwise conv (4.7 ms against 0.9 ms); PyTorch's 3x3 pooling
writes an int64 index per max-pool output and zero-fills and scatters in the backward pass (here: an int32
tap, only when a gradient is needed, and gathers); a cell's output was a concatenation, a ReLU pass and, in the
backward pass, a copy of every piece's gradient slice (here: one pass each way).

How: ``cpu_kernels.c`` is compiled with the system C compiler on first use (about a second) into a cache
folder and loaded with ctypes: no build step at install time, nothing for CUDA. Where the kernels cannot be
built (no compiler, no OpenMP, not glibc) or ``NAO_WS_CPU_KERNELS=0`` is set, every op runs PyTorch's own
kernels, with identical results up to float rounding (tested). ``ops.BatchNorm2d``,
``ops.DepthwiseConv2d``, ``ops.Pool`` and ``ops.relu_cat`` pick the path per call (:func:`applies`);
``python -m benchmarks.cnn_supernet --compare-kernels`` measures what they bring.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).with_name("cpu_kernels.c")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c99"]
ENV_SWITCH = "NAO_WS_CPU_KERNELS"  # "0": never use them

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_enabled = True


def _cpu_signature() -> str:
    """The CPU's feature flags (-march=native code is only valid on the CPU it was built for)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nao-ws" / "kernels"


def _build(target: Path) -> None:
    """Compile into a temporary file, then rename: concurrent builds (test workers, Ray workers) never see
    half-written libraries."""
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler = os.environ.get("CC", "cc")
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp, "-lm"], check=True, capture_output=True, text=True,
                       timeout=120)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i = ctypes.c_void_p, ctypes.c_int64
    for name, args in {"bn_forward": [p, p, p, ctypes.c_double, ctypes.c_int, p, i, i, i, p, p, p, p],
                       "bn_backward": [p, p, p, p, i, p, p, p, i, i, p, p, p],
                       "dw_weight_grad": [p, p, i, i, i, i, i, i, i, i, p],
                       "avg_pool3": [p, i, i, i, i, p, p], "avg_pool3_backward": [p, i, i, i, i, p, p]}.items():
        getattr(lib, name).argtypes, getattr(lib, name).restype = args, ctypes.c_int
    for name, args in {"max_pool3": [p, i, i, i, i, p, p, p], "max_pool3_backward": [p, p, i, i, i, i, p, p],
                       "relu_cat": [p, i, i, i, p], "relu_cat_backward": [p, p, i, i, i, p]}.items():
        getattr(lib, name).argtypes, getattr(lib, name).restype = args, None
    return lib


def _load() -> ctypes.CDLL | None:
    """Build (once per source, compiler flags and CPU) and load the library; None, with one warning, when
    that fails."""
    global _lib, _tried
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        _tried = True
        if os.environ.get(ENV_SWITCH, "1") == "0" or not sys.platform.startswith("linux"):
            return None
        key = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, os.environ.get("CC", "cc"), _cpu_signature(),
                                        torch.__version__]).encode()).hexdigest()[:16]
        target = _cache_dir() / f"cpu_kernels-{key}.so"
        try:
            if not target.exists():
                _build(target)
            _lib = _declare(ctypes.CDLL(str(target)))
        except (OSError, subprocess.SubprocessError) as e:
            detail = getattr(e, "stderr", None) or str(e)
            warnings.warn(f"nao-ws CPU kernels unavailable, using PyTorch's ({detail.strip().splitlines()[-1]}); "
                          f"set {ENV_SWITCH}=0 to silence this", RuntimeWarning, stacklevel=3)
            _lib = None
        return _lib


def available() -> bool:
    """Whether the kernels are built and loaded (building them on the first call)."""
    return _load() is not None


def describe(device: torch.device) -> str:
    """Which CPU kernels a run on ``device`` uses, for its log ("" off CPU)."""
    if device.type != "cpu":
        return ""
    return "nao-ws CPU kernels" if available() else "PyTorch's CPU kernels only"


@contextmanager
def enabled(on: bool):
    """Use (True) or bypass (False) the kernels inside the block; for A/B measurements and tests."""
    global _enabled
    before, _enabled = _enabled, on
    try:
        yield
    finally:
        _enabled = before


def applies(x: torch.Tensor) -> bool:
    """Whether ``x`` takes the kernels' path: a non-empty float32 NCHW-shaped CPU tensor stored channels-last."""
    return (_enabled and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.numel() > 0
            and x.is_contiguous(memory_format=torch.channels_last) and _load() is not None)


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _check(status: int, what: str) -> None:
    if status:
        raise MemoryError(f"nao-ws CPU kernel {what}: out of memory")


def _factors(scale: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """Drop-path's per-sample factors as the kernels take them: N contiguous float32 values on x's device."""
    if scale is None:
        return None
    if scale.numel() != x.shape[0] or scale.dtype != torch.float32 or scale.device != x.device:
        raise ValueError(f"scale must hold one float32 {x.device} factor per sample ({x.shape[0]}), got "
                         f"{scale.numel()} {scale.dtype} on {scale.device}")
    return scale.detach().contiguous()


def _optional_ptr(t: torch.Tensor | None):
    return None if t is None else _ptr(t)


# -- batch norm with batch statistics --------------------------------------------------------------------------

class _BatchNorm(torch.autograd.Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias with the batch's mean and biased variance per channel,
    then max(0, y) if ``relu``, then times ``scale[n]`` for sample n if ``scale`` is given (drop-path's mask; not
    differentiable). Also returns (mean, var) for the running statistics (not differentiable)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, relu, scale):
        n, c, h, w_ = x.shape
        y = torch.empty_like(x, memory_format=torch.channels_last)
        mean, var, invstd = (x.new_empty(c) for _ in range(3))
        w, b = weight.detach().contiguous(), bias.detach().contiguous()
        _check(_load().bn_forward(_ptr(x), _ptr(w), _ptr(b), eps, int(relu), _optional_ptr(scale),
                                  h * w_, x.numel() // c, c, _ptr(y), _ptr(mean), _ptr(var), _ptr(invstd)),
               "bn_forward")
        # with the ReLU, the output says where the gradient passes (the next op keeps it anyway: the
        # depthwise conv after a SepConv's first BN saves its input)
        ctx.relu, ctx.scale = relu, scale  # the mask: a detached input, never modified
        ctx.save_for_backward(x, w, mean, invstd, *([y] if relu else []))
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, _grad_mean, _grad_var):
        x, w, mean, invstd, *gate = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        n, c, h, w_ = x.shape
        grad_x = torch.empty_like(x, memory_format=torch.channels_last)
        grad_w, grad_b = x.new_empty(c), x.new_empty(c)
        _check(_load().bn_backward(_ptr(grad), _ptr(x), _ptr(gate[0]) if gate else None, _optional_ptr(ctx.scale),
                                   h * w_, _ptr(w), _ptr(mean), _ptr(invstd), x.numel() // c, c, _ptr(grad_x),
                                   _ptr(grad_w), _ptr(grad_b)),
               "bn_backward")
        return grad_x, grad_w, grad_b, None, None, None


def batch_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, relu: bool = False,
               scale: torch.Tensor | None = None):
    """Batch norm of ``x`` (``applies(x)`` must hold) with its batch statistics, then a ReLU if ``relu``, then
    times ``scale`` (non-negative float32 factors, one per sample, any shape with N elements; not
    differentiable): ``(y, mean, biased var)``."""
    return _BatchNorm.apply(x, weight, bias, eps, relu, _factors(scale, x))


# -- depthwise convolution, stride 1 -----------------------------------------------------------------------------

class _DepthwiseConv(torch.autograd.Function):
    """A depthwise convolution at stride 1: PyTorch's forward; backward with the input gradient as a
    depthwise convolution of the output gradient with the flipped kernel (oneDNN's fast forward path) and
    the weight gradient from ``dw_weight_grad``."""

    @staticmethod
    def forward(ctx, x, weight, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, None, 1, padding, 1, weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        k, pad = weight.shape[-1], ctx.padding
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.flip(2, 3), None, 1, k - 1 - pad, 1, weight.shape[0])
        if ctx.needs_input_grad[1]:
            n, c, h, w = x.shape
            ho, wo = grad.shape[2:]
            out = x.new_empty(k, k, c)
            _check(_load().dw_weight_grad(_ptr(x), _ptr(grad), n, h, w, c, ho, wo, k, pad, _ptr(out)),
                   "dw_weight_grad")
            grad_w = out.permute(2, 0, 1).reshape(weight.shape)
        return grad_x, grad_w, None


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """Depthwise square-kernel convolution (3x3, 5x5 or 7x7) at stride 1 with ``0 <= padding < kernel``;
    ``applies(x)``."""
    if weight.shape[-1] not in (3, 5, 7):
        raise ValueError("the depthwise kernel's weight gradient takes 3x3, 5x5 or 7x7 kernels, "
                         f"got {weight.shape[-1]}")
    return _DepthwiseConv.apply(x, weight, padding)


# -- 3x3 pooling, stride 1, padding 1 ----------------------------------------------------------------------------

def _like(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty(x.shape, dtype=dtype or x.dtype, memory_format=torch.channels_last)


class _MaxPool3(torch.autograd.Function):
    """3x3 max pooling at stride 1, times ``scale[n]`` for sample n if given (drop-path; not differentiable);
    the winning tap of every output is kept as an int32 (PyTorch: an int64 index), only when a gradient is
    needed."""

    @staticmethod
    def forward(ctx, x, scale):
        n, c, h, w = x.shape
        y = _like(x)
        arg = _like(x, torch.int32) if ctx.needs_input_grad[0] else None
        _load().max_pool3(_ptr(x), n, h, w, c, _optional_ptr(scale), _ptr(y), _optional_ptr(arg))
        ctx.scale = scale  # the mask: a detached input, never modified
        if arg is not None:
            ctx.save_for_backward(arg)
            ctx.mark_non_differentiable(arg)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (arg,) = ctx.saved_tensors
        n, c, h, w = grad.shape
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = _like(grad)
        _load().max_pool3_backward(_ptr(grad), _ptr(arg), n, h, w, c, _optional_ptr(ctx.scale), _ptr(grad_x))
        return grad_x, None


class _AvgPool3(torch.autograd.Function):
    """3x3 average pooling at stride 1 over the pixels inside the image (``count_include_pad=False``), times
    ``scale[n]`` for sample n if given (drop-path; not differentiable)."""

    @staticmethod
    def forward(ctx, x, scale):
        n, c, h, w = x.shape
        y = _like(x)
        _check(_load().avg_pool3(_ptr(x), n, h, w, c, _optional_ptr(scale), _ptr(y)), "avg_pool3")
        ctx.scale = scale  # the mask: a detached input, never modified
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        n, c, h, w = grad.shape
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = _like(grad)
        _check(_load().avg_pool3_backward(_ptr(grad), n, h, w, c, _optional_ptr(ctx.scale), _ptr(grad_x)),
               "avg_pool3_backward")
        return grad_x, None


def pool3(x: torch.Tensor, kind: str, scale: torch.Tensor | None = None) -> torch.Tensor:
    """3x3 ``kind`` ("max" or "avg") pooling, stride 1, padding 1, then times ``scale`` (non-negative float32
    factors, one per sample; not differentiable) if given; ``applies(x)`` must hold."""
    return (_MaxPool3 if kind == "max" else _AvgPool3).apply(x, _factors(scale, x))


# -- ReLU of a concatenation -------------------------------------------------------------------------------------

def _pointers(tensors) -> ctypes.Array:
    return (ctypes.c_void_p * len(tensors))(*[_ptr(t) for t in tensors])


class _ReLUCat(torch.autograd.Function):
    """max(0, concatenation of K equally shaped maps along the channels), one pass each way; the backward pass
    writes every piece's gradient as a contiguous map (a slice of the concatenation's gradient is not)."""

    @staticmethod
    def forward(ctx, *pieces):
        n, c, h, w = pieces[0].shape
        out = torch.empty((n, len(pieces) * c, h, w), memory_format=torch.channels_last)
        _load().relu_cat(_pointers(pieces), len(pieces), n * h * w, c, _ptr(out))
        ctx.save_for_backward(out)
        ctx.pieces = len(pieces)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        n, kc, h, w = out.shape
        c = kc // ctx.pieces
        grad = grad.contiguous(memory_format=torch.channels_last)
        grads = [torch.empty((n, c, h, w), memory_format=torch.channels_last) for _ in range(ctx.pieces)]
        _load().relu_cat_backward(_ptr(grad), _ptr(out), ctx.pieces, n * h * w, c, _pointers(grads))
        return tuple(grads)


def relu_cat(pieces) -> torch.Tensor:
    """ReLU of the concatenation of two or more equally shaped maps along the channels, each ``applies``."""
    return _ReLUCat.apply(*pieces)
