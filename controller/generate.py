"""New architectures by gradient ascent in embedding space (paper Eq. 2 and footnote 4, reference §2.2)."""
from __future__ import annotations

import itertools
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import GenerateConfig
from .model import NAO, evaluating, pool
from .space import ControllerInputError, TokenSpace
from .train import check_scores, check_sequences


class Candidate(NamedTuple):
    tokens: tuple[int, ...]  # the decoded sequence, valid in the space
    predicted: float  # f(E(tokens)), on the [0, 1] scale of the last fit
    seed: int  # index in ``token_seqs`` of the seed it was decoded from
    step_size: float  # the eta that produced it


def predict(model: NAO, token_seqs: Sequence[Sequence[int]], space: TokenSpace) -> np.ndarray:
    """f(E(x)) for every sequence, in eval mode (no dropout)."""
    x = check_sequences(model, token_seqs, space)
    with evaluating(model), torch.no_grad():
        return model.predict(torch.from_numpy(x).to(next(model.parameters()).device)).cpu().numpy()


def generate(model: NAO, token_seqs: Sequence[Sequence[int]], scores: Sequence[float], space: TokenSpace,
             cfg: GenerateConfig, *, known: Iterable[tuple[int, ...]] = ()) -> list[Candidate]:
    """Up to ``cfg.num_new`` new architectures decoded from moved embeddings of the top ``cfg.num_seeds``.

    Seeds are the best ``cfg.num_seeds`` of ``token_seqs`` by ``scores`` (higher = better, ties to the lower
    index). Their per-step encoder outputs move to h' = normalise(h + eta * df/dh) and are decoded greedily
    with masks. eta runs through ``step_size``, ``+ step_growth``, ... up to ``max_step_size`` (ref-PT's 1, 2,
    ..., 50): each eta is one batched decode of every seed, the gradient being computed once. A decoded
    architecture is kept when its canonical form (``space.canonical_tokens``) is not that of any sequence in
    ``token_seqs``, in ``known`` (canonical forms of other architectures seen before) or of one kept earlier;
    a seed whose decode is not new is thereby retried at the next, larger eta (paper footnote 4). Every seed
    stays in play after a success too, so more than ``num_seeds`` architectures can be found (ref-PT: 300
    from 100 seeds). Stops at ``num_new`` or after the largest eta; results come in the order found (eta,
    then seed rank).
    """
    x = check_sequences(model, token_seqs, space)
    y = check_scores(scores, len(x))
    if cfg.num_seeds > len(x):
        raise ControllerInputError(f"{cfg.num_seeds} seeds requested but only {len(x)} architectures given")
    seeds = np.argsort(-y, kind="stable")[: cfg.num_seeds]
    canonical: dict[tuple[int, ...], tuple[int, ...]] = {}  # decodes repeat across eta: canonicalise once

    def canon(seq: tuple[int, ...]) -> tuple[int, ...]:
        if seq not in canonical:
            canonical[seq] = tuple(space.canonical_tokens(seq))
        return canonical[seq]

    seen = set(known) | {canon(tuple(seq)) for seq in x.tolist()}
    device = next(model.parameters()).device
    found: list[tuple[tuple[int, ...], int, float]] = []
    with evaluating(model), torch.enable_grad():
        h = model.encoder(torch.from_numpy(x[seeds]).to(device)).detach().requires_grad_()
        (grad,) = torch.autograd.grad(model.predictor(pool(h)).sum(), h)  # paper Eq. 2
    with evaluating(model), torch.no_grad():
        for k in itertools.count():
            eta = cfg.step_size + k * cfg.step_growth
            if eta > cfg.max_step_size or len(found) == cfg.num_new:
                break
            decoded = model.decode(F.normalize(h + eta * grad, dim=-1)).tolist()  # reference §2.2: re-normalise
            for seed, seq in zip(seeds.tolist(), map(tuple, decoded)):
                if len(found) < cfg.num_new and canon(seq) not in seen:
                    seen.add(canon(seq))
                    found.append((seq, seed, eta))
        if not found:
            return []
        pred = model.predict(torch.tensor([seq for seq, _, _ in found], device=device)).cpu().tolist()
    return [Candidate(seq, p, seed, eta) for (seq, seed, eta), p in zip(found, pred)]
