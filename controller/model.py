"""The NAO model (paper 3.2, reference §2.1): ``encoder`` E, performance ``predictor`` f and ``decoder`` D.

Tensors: token sequences are ``long [B, L]`` with tokens in ``1..V-1``; the encoder's per-step outputs
``h`` are ``[B, T, H]`` (T = L / group steps, each row of unit length) and the embedding ``e`` = the
re-normalised mean of ``h`` is ``[B, H]``. Masks are the space's first-order ``transition_mask``
``bool [L, V, V]``, applied both in training and in inference.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

START = 0  # the decoder's start token, also the encoder's padding token (controller.space)


@contextmanager
def evaluating(model: nn.Module):
    """Eval mode (no dropout) for the block, then the model's previous mode again."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def pool(h: torch.Tensor) -> torch.Tensor:
    """e_x: mean over steps of the normalised outputs, normalised again (reference §2.1)."""
    return F.normalize(h.mean(dim=1), dim=-1)


class Encoder(nn.Module):
    """Token embedding + 1-layer LSTM; each step reads ``group`` concatenated token embeddings.

    With ``group = 2`` a step is one (index, op) pair (reference §2.1). A length that is not a multiple of
    ``group`` is left-padded with the start token 0: the rnn space's 23 tokens become 24, so its first
    step is (0, node-0 activation) and every later step one (prev, act) pair of a node.
    """

    def __init__(self, vocab_size: int, cfg: ModelConfig):
        super().__init__()
        self.group = cfg.group
        self.embedding = nn.Embedding(vocab_size, cfg.embed_size)
        self.lstm = nn.LSTM(cfg.group * cfg.embed_size, cfg.hidden_size, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, length = tokens.shape
        tokens = F.pad(tokens, (-length % self.group, 0), value=START)
        x = self.embedding(tokens).reshape(b, tokens.size(1) // self.group, -1)
        h, _ = self.lstm(x)
        return F.normalize(h, dim=-1)  # reference §2.1: every step L2-normalised


class Predictor(nn.Module):
    """f: MLP (ReLU, dropout) on e_x with a sigmoid output, since targets are min-max normalised (reference §2.1)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, width = [], cfg.hidden_size
        for _ in range(cfg.mlp_layers):
            layers += [nn.Linear(width, cfg.mlp_hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = cfg.mlp_hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(e)).squeeze(-1)


class Decoder(nn.Module):
    """D: LSTM started from (e_x, e_x), Luong dot-product attention over ``h``, masked log-softmax.

    No input feeding, so teacher forcing is one LSTM call over the whole sequence. ``align`` [L, T] is a
    learned bias on the attention scores of output position t for encoder step k (``cfg.align_bias``; not
    in ref-PT): dot-product attention alone has no notion of position, and on held-out architectures it
    sometimes attends one step off, skipping a pair and shifting the rest of the sequence. The bias learns
    the fixed alignment (t -> t // group) in a few epochs: held-out Hamming distance on cnn-ws at 150-300
    epochs drops from ~0.3 to 0.0, on cnn from ~5 to ~0.01 tokens (benchmarks/controller.py setting).
    """

    def __init__(self, vocab_size: int, length: int, cfg: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.embed_size)
        self.lstm = nn.LSTM(cfg.embed_size, cfg.hidden_size, batch_first=True)
        align = torch.zeros(length, -(-length // cfg.group))  # [L, T]
        if cfg.align_bias:
            self.align = nn.Parameter(align)
        else:
            self.register_buffer("align", align, persistent=False)
        self.combine = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, vocab_size)

    def _logits(self, s: torch.Tensor, h: torch.Tensor, align: torch.Tensor) -> torch.Tensor:
        attn = torch.softmax(s @ h.transpose(1, 2) + align, dim=-1)  # [B, L, T]
        return self.out(torch.tanh(self.combine(torch.cat([attn @ h, s], dim=-1))))

    def forward(self, h: torch.Tensor, e: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-probabilities ``[B, L, V]``; invalid tokens get -inf (reference §2.1, last bullet)."""
        prev = F.pad(tokens[:, :-1], (1, 0), value=START)
        state = (e.unsqueeze(0).contiguous(), e.unsqueeze(0).contiguous())
        s, _ = self.lstm(self.embedding(prev), state)
        allowed = mask[torch.arange(tokens.size(1), device=tokens.device), prev]  # [B, L, V]
        return self._logits(s, h, self.align).masked_fill(~allowed, float("-inf")).log_softmax(dim=-1)

    def greedy(self, h: torch.Tensor, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Greedy masked decoding, one position at a time: always a valid sequence ``long [B, L]``."""
        prev = torch.full((h.size(0),), START, dtype=torch.long, device=h.device)
        state = (e.unsqueeze(0).contiguous(), e.unsqueeze(0).contiguous())
        out = []
        for t in range(mask.size(0)):
            s, state = self.lstm(self.embedding(prev).unsqueeze(1), state)
            logits = self._logits(s, h, self.align[t]).squeeze(1).masked_fill(~mask[t, prev], float("-inf"))
            prev = logits.argmax(dim=-1)
            out.append(prev)
        return torch.stack(out, dim=1)


class NAO(nn.Module):
    """Encoder, predictor and decoder of one search space, with that space's transition mask as a buffer."""

    def __init__(self, cfg: ModelConfig, transition_mask: np.ndarray):
        super().__init__()
        mask = torch.tensor(np.asarray(transition_mask, dtype=bool))  # a copy: the space shares its mask
        self.length, self.vocab_size = mask.shape[0], mask.shape[-1]
        self.cfg = cfg
        self.register_buffer("mask", mask, persistent=False)  # rebuilt from the space, not checkpointed
        self.encoder = Encoder(self.vocab_size, cfg)
        self.predictor = Predictor(cfg)
        self.decoder = Decoder(self.vocab_size, self.length, cfg)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: predicted scores ``[B]`` and teacher-forced log-probabilities ``[B, L, V]``."""
        h = self.encoder(tokens)
        e = pool(h)
        return self.predictor(e), self.decoder(h, e, tokens, self.mask)

    def predict(self, tokens: torch.Tensor) -> torch.Tensor:
        """f(E(x)) ``[B]``."""
        return self.predictor(pool(self.encoder(tokens)))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """D(h): greedy masked decoding from per-step encoder outputs ``[B, T, H]`` (unit rows)."""
        return self.decoder.greedy(h, pool(h), self.mask)

    def reconstruct(self, tokens: torch.Tensor) -> torch.Tensor:
        """D(E(x)) ``long [B, L]``."""
        return self.decode(self.encoder(tokens))
