"""What one training step returns, for the CNN and the RNN networks alike (``cnn.train_step``,
``rnn.train_step``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepResult:
    """Numbers, or with ``train_step(sync=False)`` device tensors (then ``finite`` is a bool tensor)."""

    loss: float  # the minibatch's cross-entropy (NaN or inf when not finite)
    finite: bool  # False: the loss or the gradient was not finite and nothing was updated
    acc: float | None = None  # an image classifier's training accuracy on the minibatch
    hidden: torch.Tensor | None = None  # a language model's detached state for the next window (zeros if not finite)
