"""Test-session settings: one intra-op thread, for this process and the CLI subprocesses tests start.

Measured here: with two threads on a busy 2-core machine, small CPU kernels (batch norm, depthwise conv,
the controller's step-by-step LSTM) ran 10-200x slower from OpenMP spin-waiting; one thread keeps the
suite's run time predictable wherever it runs.
"""
import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)


import math  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def tb_scalars():
    """``tb_scalars(run_folder)`` -> {tag: [(step, value), ...]} as TensorBoard shows them (purges applied;
    NaN as None, so that equal curves compare equal)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def read(run_folder):
        acc = EventAccumulator(str(run_folder / "tb"), size_guidance={"scalars": 0})
        acc.Reload()
        return {tag: [(e.step, None if math.isnan(e.value) else e.value) for e in acc.Scalars(tag)]
                for tag in acc.Tags()["scalars"]}

    return read
