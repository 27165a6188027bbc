"""ENAS's controller (Pham et al. 2018) as a strategy: an LSTM policy over the space's tokens
(``controller.policy``) trained by REINFORCE, with ENAS's published values for the space (docs/strategies.md).

On a supernet it runs ENAS's alternation: each epoch the shared weights train on architectures the policy
samples (``sampler``, ``--sampling policy``), then the policy trains for ``policy_steps`` updates of
``policy_aggregate`` samples each, rewarded by inherited-weight accuracy on one validation minibatch (images)
or 80 / validation perplexity (PTB) (``learn``). Each round proposes unseen samples of the policy; the pool's
scoring on the fixed dev data picks the best, as ENAS keeps the best of several samples on validation data.

On a table or with standalone training it is REINFORCE on the scores (the NAS-Bench-201 paper's baseline):
every new score is one update, and a sample of an architecture already scored is an update with its known
score, which costs no query.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from controller.config import PolicyConfig, ReinforceConfig
from controller.policy import Policy, Reinforce

from . import Proposal, Strategy, canonical_text

SAMPLE_CHUNK = 64  # policy samples drawn at once for supernet minibatches and a supernet round's proposals
MAX_DRAWS = 1000  # samples a round may draw for unseen architectures before the search tops it up at random
ENAS_SEP_CONVS = 2  # ENAS's first two ops, the separable convolutions, which its initial biases favour


def initial_bias(space) -> np.ndarray | None:
    """ENAS's initial output bias (``b_soft`` = 10 on the separable convolutions, 0 elsewhere): cnn-ws only,
    the one space whose ops are ENAS's, in ENAS's order."""
    if space.name != "cnn-ws":
        return None
    bias = np.zeros(space.vocab_size, np.float32)
    bias[space.op_offset: space.op_offset + ENAS_SEP_CONVS] = 10.0
    return bias


def fixed_prior(space) -> np.ndarray | None:
    """ENAS's fixed logit terms. cnn-ws: ``b_soft_no_learn``, +0.25 on the separable convolutions and -0.25 on
    the other ops, on the normal cell's op decisions (src/cifar10/micro_controller.py). rnn: node k's input j
    penalised by (k - j)^2 / 6 (src/ptb/ptb_enas_controller.py)."""
    prior = np.zeros((space.length, space.vocab_size), np.float32)
    if space.name == "cnn-ws":
        ops = np.full(len(space.ops), -0.25, np.float32)
        ops[:ENAS_SEP_CONVS] = 0.25
        for pos in range(1, space.length // 2, 2):  # the normal cell's op decisions
            prior[pos, space.op_offset: space.op_offset + len(ops)] = ops
        return prior
    if space.name == "rnn":
        for k in range(1, space.num_nodes):
            j = np.arange(k)
            prior[2 * k - 1, space.prev_offset + j] = -((k - j) ** 2) / 6.0
        return prior
    return None


class EnasStrategy(Strategy):
    name = "enas"
    per_round = 1  # on a table: one query at a time, each score an update before the next sample

    def __init__(self, space, policy_cfg: PolicyConfig, reinforce_cfg: ReinforceConfig, device: torch.device, *,
                 online: bool, reward_scale: float, seed: int):
        super().__init__(space)
        with torch.random.fork_rng(devices=[]):  # the policy's initial weights depend on the seed alone
            torch.manual_seed(seed)
            policy = Policy(space, policy_cfg, space.index_positions, fixed_prior(space), initial_bias(space))
        self.policy = policy.to(device)
        self.reinforce = Reinforce(self.policy, reinforce_cfg)
        self.online, self.reward_scale = online, reward_scale
        self.learnt = 0  # history entries already learnt from (a table, standalone training)

    @classmethod
    def from_config(cls, cfg, space, source) -> "EnasStrategy":
        policy = PolicyConfig(hidden_size=cfg.policy_hidden, layers=cfg.policy_layers, temperature=cfg.temperature,
                              tanh_constant=cfg.tanh_constant, op_tanh_reduce=cfg.op_tanh_reduce)
        reinforce = ReinforceConfig(lr=cfg.policy_lr, beta1=cfg.policy_beta1, eps=cfg.policy_eps,
                                    grad_clip=cfg.policy_grad_clip, entropy_weight=cfg.entropy_weight,
                                    baseline_decay=cfg.baseline_decay, steps=cfg.policy_steps,
                                    aggregate=cfg.policy_aggregate)
        return cls(space, policy, reinforce, source.device, online=source.stale, reward_scale=source.reward_scale,
                   seed=cfg.seed)

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
        tokens = self.policy.sample(n, rng)
        return tokens, [self.space.decode(t) for t in tokens]

    def likely(self) -> str:
        """The policy's most likely architecture (greedy decoding), as text."""
        return self.space.format(self.space.decode(self.policy.sample(1)[0]))

    def sampler(self, rng: np.random.Generator) -> Callable:
        queue: list = []

        def pick():
            if not queue:
                queue.extend(reversed(self.draw(SAMPLE_CHUNK, rng)[1]))
            return queue.pop()
        return pick

    def learn(self, reward: Callable, rng: np.random.Generator) -> dict:
        cfg = self.reinforce.cfg
        steps = []
        for _ in range(cfg.steps):
            tokens, archs = self.draw(cfg.aggregate, rng)
            steps.append(self.reinforce.step(tokens, reward(archs)))
        return {"policy": self._figures(steps)}

    def _figures(self, steps: list[dict]) -> dict:
        means = {k: float(np.mean([s[k] for s in steps])) for k in ("reward", "entropy", "loss")} if steps else {}
        return {**means, "baseline": self.reinforce.baseline, "updates": self.reinforce.updates,
                "likely": self.likely()}

    def propose(self, history: Sequence[tuple], n: int, known: set, rng: np.random.Generator) -> list[Proposal]:
        steps = []
        if not self.online:
            for arch, score in history[self.learnt:]:
                steps.append(self.reinforce.step([self.space.encode(arch)], [score * self.reward_scale]))
            self.learnt = len(history)
        scores = {} if self.online else {canonical_text(self.space, a): s for a, s in history}
        out, draws = [], 0
        while len(out) < n and draws < MAX_DRAWS:
            tokens, archs = self.draw(SAMPLE_CHUNK if self.online else 1, rng)
            draws += len(archs)
            for t, arch in zip(tokens, archs):
                key = canonical_text(self.space, arch)
                if key not in known:
                    known.add(key)
                    out.append(Proposal(arch, "enas"))
                elif key in scores:  # scored already: an update that costs no query
                    steps.append(self.reinforce.step([t], [scores[key] * self.reward_scale]))
                if len(out) == n:
                    break
        learnt = {} if self.online else self._figures(steps)  # on a supernet, ``learn`` reports the policy's
        self.metrics = {"policy": {**learnt, "draws": draws}}
        return out

    def state_dict(self) -> dict:
        return {"reinforce": self.reinforce.state_dict(), "learnt": self.learnt}

    def load_state_dict(self, state: dict) -> None:
        self.reinforce.load_state_dict(state["reinforce"])
        self.learnt = state["learnt"]
