"""ENAS's controller (Pham et al. 2018): an LSTM policy that samples an architecture's tokens one decision at
a time, trained by REINFORCE with a moving-average baseline and an entropy bonus (``reinforce``).

Generic over token spaces (``controller.space.TokenSpace``): the token allowed at each position comes from the
space's first-order transition mask, so every sample is a valid architecture. ENAS's logit shaping is kept:
``logits / temperature``, then ``C * tanh(logits)`` with ``C = tanh_constant`` for input (index) decisions and
``tanh_constant / op_tanh_reduce`` for op decisions, then a fixed prior added (ENAS's ``b_soft_no_learn`` and
its PTB distance penalty; the caller builds it for its space). One difference, documented in docs: every
decision is a softmax of the LSTM state over the vocabulary (the NAO decoder's token view), where ENAS
chooses inputs by attention over the LSTM states of earlier nodes.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import PolicyConfig, ReinforceConfig, require

START = 0  # the token before position 0 (controller.space)


class Policy(nn.Module):
    """An LSTM reading the previous token and emitting the next one's logits, masked to the allowed tokens.

    ``index_positions`` (bool [length]): positions choosing an input (clipped at ``tanh_constant``), the others
    choosing an op (clipped at ``tanh_constant / op_tanh_reduce``). ``prior`` (float [length, vocab]): added to
    the shaped logits, never learned. ``bias`` (float [vocab]): the initial bias of the output layer, which
    ENAS sets to favour the convolutions (``b_soft``).
    """

    def __init__(self, space, cfg: PolicyConfig, index_positions, prior=None, bias=None):
        super().__init__()
        vocab, length = space.vocab_size, space.length
        index_positions = np.asarray(index_positions, dtype=bool)
        require(index_positions.shape == (length,), f"index_positions must have {length} entries")
        self.cfg, self.length = cfg, length
        self.embed = nn.Embedding(vocab, cfg.hidden_size)
        self.lstm = nn.LSTM(cfg.hidden_size, cfg.hidden_size, cfg.layers, batch_first=True)
        self.head = nn.Linear(cfg.hidden_size, vocab)
        for p in self.parameters():
            nn.init.uniform_(p, -cfg.init_range, cfg.init_range)
        if bias is not None:
            with torch.no_grad():
                self.head.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float32)))
        clip = np.where(index_positions, cfg.tanh_constant, cfg.tanh_constant / cfg.op_tanh_reduce)
        prior = np.zeros((length, vocab), np.float32) if prior is None else np.asarray(prior, np.float32)
        require(prior.shape == (length, vocab), f"prior must have shape ({length}, {vocab})")
        # buffers rebuilt from the space, not checkpointed
        self.register_buffer("mask", torch.tensor(np.asarray(space.transition_mask, dtype=bool)), persistent=False)
        self.register_buffer("clip", torch.tensor(clip, dtype=torch.float32), persistent=False)
        self.register_buffer("prior", torch.tensor(prior), persistent=False)

    def logits(self, out: torch.Tensor, prev: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Shaped, masked logits [n, P, vocab] from LSTM outputs [n, P, H] at ``positions`` [P] after ``prev``
        [n, P]; disallowed tokens get -inf."""
        z = self.head(out)
        if self.cfg.temperature:
            z = z / self.cfg.temperature
        if self.cfg.tanh_constant:
            z = self.clip[positions][:, None] * torch.tanh(z)
        z = z + self.prior[positions]
        allowed = self.mask[positions[None, :], prev]
        return z.masked_fill(~allowed, float("-inf"))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy (summed over decisions) of each sequence of ``tokens`` [n, length]."""
        require(tokens.dim() == 2 and tokens.size(1) == self.length,
                 f"tokens must have shape [n, {self.length}], got {list(tokens.shape)}")
        prev = F.pad(tokens[:, :-1], (1, 0), value=START)
        out, _ = self.lstm(self.embed(prev))
        logits = self.logits(out, prev, torch.arange(self.length, device=tokens.device))
        logp = F.log_softmax(logits, dim=-1)
        chosen = logp.gather(-1, tokens[..., None])[..., 0]
        require(bool(torch.isfinite(chosen).all()), "a token sequence holds a token its position does not allow")
        entropy = -torch.where(torch.isfinite(logp), logp.exp() * logp, torch.zeros_like(logp)).sum(-1)
        return chosen.sum(1), entropy.sum(1)

    @torch.no_grad()
    def sample(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """``n`` token sequences [n, length] drawn from the policy with ``rng`` (inverse CDF of each decision's
        probabilities, so the draws are the same on every device); without ``rng`` the most likely token at
        each step (greedy: the policy's most likely architecture, approximately)."""
        device = self.head.weight.device
        tokens = np.zeros((n, self.length), dtype=np.int64)
        prev = torch.full((n, 1), START, dtype=torch.long, device=device)
        state = None
        for t in range(self.length):
            out, state = self.lstm(self.embed(prev), state)
            logits = self.logits(out, prev, torch.tensor([t], device=device))[:, 0]
            if rng is None:
                tokens[:, t] = logits.argmax(-1).cpu().numpy()
            else:
                cdf = np.cumsum(F.softmax(logits.double(), -1).cpu().numpy(), axis=1)
                cdf /= cdf[:, -1:]
                tokens[:, t] = np.argmax(cdf > rng.random(n)[:, None], axis=1)  # never a token of probability 0
            prev = torch.as_tensor(tokens[:, t:t + 1], device=device)
        return tokens


class Reinforce:
    """REINFORCE as ENAS trains its controller: the reward plus ``entropy_weight`` x the sample's entropy;
    the baseline, a moving average of those rewards, moves toward each reward before that reward's advantage
    is taken; the loss is minus the mean of log-probability x advantage over the step's samples (ENAS
    aggregates ``num_aggregate`` samples' gradients); Adam, its gradient optionally clipped."""

    def __init__(self, policy: Policy, cfg: ReinforceConfig):
        self.policy, self.cfg = policy, cfg
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999), eps=cfg.eps)
        self.baseline = 0.0
        self.updates = 0

    def step(self, tokens: np.ndarray, rewards) -> dict:
        """One update from the samples ``tokens`` [n, length] and their ``rewards``; the step's figures."""
        rewards = [float(r) for r in rewards]
        require(len(rewards) == len(tokens) > 0, "step needs one reward per sample, and at least one sample")
        require(all(np.isfinite(rewards)), "a reward is not finite")
        device = self.policy.head.weight.device
        log_prob, entropy = self.policy(torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=device))
        advantages = []
        for r, h in zip(rewards, entropy.detach().cpu().tolist()):
            r += self.cfg.entropy_weight * h
            self.baseline -= (1 - self.cfg.baseline_decay) * (self.baseline - r)
            advantages.append(r - self.baseline)
        loss = -(log_prob * torch.tensor(advantages, device=device)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.updates += 1
        return {"reward": float(np.mean(rewards)), "baseline": self.baseline,
                "entropy": float(entropy.detach().mean()), "loss": float(loss.detach())}

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline, self.updates = float(state["baseline"]), int(state["updates"])
