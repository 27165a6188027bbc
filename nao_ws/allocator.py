"""Process-wide allocator setting for CPU runs (no torch import: the CLI calls it on every start)."""
from __future__ import annotations

import ctypes

# glibc serves blocks above the mmap threshold (dynamic, at most 32 MiB by default) with fresh mmap'ed pages
# and trims freed heap memory; a larger threshold and no trimming keep freed blocks for reuse (mallopt(3)).
MMAP_THRESHOLDS = (1 << 30, 32 << 20)  # some glibc versions refuse more than 32 MiB
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory for reuse instead of returning it to the OS.

    Activations of the CNN supernet at the scoring batch (500 images: 41 MB per 20-channel 32x32 tensor)
    exceed glibc's largest mmap threshold, so with its defaults every such tensor is a fresh mapping whose
    pages fault on first touch (about 2.5 us a page on the 2-core VM: a ReLU over it took 26 ms instead of
    a few). Keeping freed blocks makes scoring markedly faster (``benchmarks/cnn_supernet.py
    --compare-allocator``). The cost: the process keeps its peak memory. Returns whether the setting took
    (False off glibc, e.g. on macOS or musl).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    if not any(mallopt(M_MMAP_THRESHOLD, value) for value in MMAP_THRESHOLDS):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, MMAP_THRESHOLDS[0]))
