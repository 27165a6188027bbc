"""Joint training of encoder, predictor and decoder (paper 3.3, reference §2.1, §2.3) and held-out evaluation.

The search loop keeps one model and one optimiser for the whole search::

    model = NAO(model_cfg, space.transition_mask).to(device)
    optimizer = make_optimizer(model, train_cfg)
    for iteration in ...:
        metrics = fit(model, seqs, scores, space, train_cfg, seed=seed + iteration, optimizer=optimizer)
        checkpoint["controller"] = export_state(model, optimizer)   # torch.save-able, weights_only
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from .config import TrainConfig
from .metrics import kendall_tau, mean_hamming, pairwise_accuracy, precision_at_k, spearman_rho
from .model import NAO, evaluating
from .space import ControllerInputError, TokenSpace


def check_sequences(model: NAO, token_seqs: Sequence[Sequence[int]], space: TokenSpace) -> np.ndarray:
    """``int64 [n, L]`` of valid sequences, or ``ControllerInputError`` naming the first bad one."""
    if (model.length, model.vocab_size) != (space.length, space.vocab_size):
        raise ControllerInputError(f"the model was built for {model.length} tokens of vocabulary {model.vocab_size}, "
                                   f"space {space.name} has {space.length} of {space.vocab_size}")
    if len(token_seqs) == 0:
        raise ControllerInputError("no architectures given")
    for i, seq in enumerate(token_seqs):
        if len(seq) != space.length:
            raise ControllerInputError(f"sequence {i} has {len(seq)} tokens; space {space.name} has {space.length}")
    x = np.asarray(token_seqs, dtype=np.int64)
    bad = (x < 0) | (x >= space.vocab_size)
    if not bad.any():
        mask = model.mask.cpu().numpy()
        prev = np.pad(x[:, :-1], ((0, 0), (1, 0)))  # start token 0 before position 0
        bad = ~mask[np.arange(space.length), prev, x]
    if bad.any():
        i, t = np.argwhere(bad)[0]
        raise ControllerInputError(f"sequence {i}: token {x[i, t]} is not valid at position {t} in space {space.name}")
    return x


def check_scores(scores: Sequence[float], n: int) -> np.ndarray:
    """``float64 [n]`` of finite scores, or ``ControllerInputError``."""
    y = np.asarray(scores, dtype=np.float64)
    if y.shape != (n,):
        raise ControllerInputError(f"got {y.size} scores for {n} architectures")
    if not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ControllerInputError(f"score {i} is {y[i]}; scores must be finite numbers")
    return y


def normalise(scores: np.ndarray, how: str = "minmax") -> np.ndarray:
    """Targets in [0, 1], higher = better: min-max (reference §2.1) or quantiles (``"rank"``, ties share their mean
    rank); equal scores all map to 0.5."""
    lo, hi = scores.min(), scores.max()
    if hi == lo:
        return np.full_like(scores, 0.5)
    if how == "rank":
        return (stats.rankdata(scores) - 1) / (len(scores) - 1)
    return (scores - lo) / (hi - lo)


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean pairwise hinge: every pair whose targets differ should be predicted in the same order, ``margin``
    apart (a ranking loss for the predictor, measured on NAS-Bench-201)."""
    sign = torch.sign(target[:, None] - target[None, :])
    hinge = F.relu(margin - sign * (pred[:, None] - pred[None, :]))
    pairs = sign.abs()
    return (hinge * pairs).sum() / pairs.sum().clamp(min=1)


def make_optimizer(model: NAO, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with L2 weight decay (reference §2.1). Fused: one kernel per step, ~20% faster epochs on CPU."""
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def export_state(model: NAO, optimizer: torch.optim.Optimizer) -> dict:
    """Model and optimiser state as plain dicts of tensors and Python scalars (``weights_only`` loadable)."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}


def load_state(model: NAO, optimizer: torch.optim.Optimizer, state: dict) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])


METRICS = ("pairwise_accuracy", "kendall_tau", "spearman_rho", "precision_at_k", "hamming")  # evaluate()'s keys


@contextmanager
def _seeded_torch(seed: int, device: torch.device):
    """Seed torch's global RNG (dropout draws from it) without disturbing the caller's RNG streams."""
    accel = device.type != "cpu"
    with torch.random.fork_rng(devices=[device] if accel else [], device_type=device.type if accel else None):
        torch.manual_seed(seed)
        yield


def fit(model: NAO, token_seqs: Sequence[Sequence[int]], scores: Sequence[float], space: TokenSpace,
        cfg: TrainConfig, *, seed: int, optimizer: torch.optim.Optimizer | None = None,
        progress: Callable[[int, dict], None] | None = None, unlabeled: Sequence[Sequence[int]] = ()) -> dict:
    """Train ``model`` on (sequence, score) pairs for ``cfg.epochs`` epochs; return metrics.

    ``scores``: higher = better (pass -loss for the RNN), any scale; they are min-max normalised over all
    given architectures (reference §2.1). A random ``cfg.holdout`` fraction is left out of training and used for
    the metrics (reference §2.3). Each time a training example is drawn it goes through ``space.augment_tokens``
    (a fresh branch swap; reference §2.3) when ``cfg.augment``.

    Warm start: the model keeps its weights from the previous call, and ``optimizer`` (from
    :func:`make_optimizer`, the same object every iteration) keeps its Adam moments, as ref-PT's single
    optimiser does: a fresh Adam would take full-size, bias-corrected steps in every coordinate at first and
    knock the warm model off its minimum each iteration. ``optimizer=None`` starts a fresh Adam (tests,
    benchmarks). Checkpoint both with :func:`export_state` *before* calling ``fit``.

    Deterministic: shuffling, the split and augmentation draw from ``np.random.default_rng(seed)``, dropout
    from torch's RNG seeded with ``seed`` inside a fork (the caller's RNG state is left untouched). Same
    model/optimiser state + same data + same seed = same result on CPU, so a crash mid-``fit`` is recovered
    by reloading the last checkpoint and calling ``fit`` again.

    ``unlabeled``: sequences without scores (they cost nothing to sample), trained on the reconstruction
    loss only, each epoch in batches beside the labeled ones (semi-supervised).

    ``cfg.targets`` picks the target scaling (:func:`normalise`); ``cfg.rank_loss`` > 0 adds a pairwise
    :func:`ranking_loss` on each batch to the MSE term.

    ``progress(epoch, {"loss", "mse", "nll"})`` is called after every epoch (epoch means, training set).

    Returns ``train_loss``, ``train_mse``, ``train_nll`` (last epoch), the held-out metrics of
    :func:`evaluate` (NaN when fewer than two architectures are held out), ``n_train``, ``n_holdout``,
    ``epochs`` and ``seconds_per_epoch``.
    """
    x = check_sequences(model, token_seqs, space)
    y = normalise(check_scores(scores, len(x)), cfg.targets)
    extra = check_sequences(model, unlabeled, space) if len(unlabeled) else np.zeros((0, x.shape[1]), np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_hold = int(cfg.holdout * len(x))
    if len(x) - n_hold < 1:
        raise ControllerInputError(f"{len(x)} architectures leave none to train on with holdout = {cfg.holdout}")
    hold, train = order[:n_hold], order[n_hold:]
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, cfg) if optimizer is None else optimizer
    train_seqs, train_y = x[train].tolist(), torch.tensor(y[train], dtype=torch.float32, device=device)
    extra_seqs = extra.tolist()
    steps = -(-len(train_seqs) // cfg.batch_size)
    extra_batch = -(-len(extra_seqs) // steps)  # the unlabeled set is spread over the labeled batches
    logs = {"loss": float("nan"), "mse": float("nan"), "nll": float("nan")}
    start = time.perf_counter()
    model.train()
    with _seeded_torch(seed, device):
        for epoch in range(cfg.epochs):
            perm = rng.permutation(len(train_seqs))
            seqs = [space.augment_tokens(train_seqs[i], rng) if cfg.augment else train_seqs[i] for i in perm]
            tokens, targets = torch.tensor(seqs, device=device), train_y[torch.from_numpy(perm).to(device)]
            more = torch.tensor(extra_seqs, dtype=torch.long, device=device)[torch.from_numpy(
                rng.permutation(len(extra_seqs))).to(device)] if extra_seqs else None
            sums = torch.zeros(3, device=device)
            for k, i in enumerate(range(0, len(seqs), cfg.batch_size)):
                xb, yb = tokens[i: i + cfg.batch_size], targets[i: i + cfg.batch_size]
                if more is not None:
                    xb = torch.cat([xb, more[k * extra_batch: (k + 1) * extra_batch]])
                pred, log_probs = model(xb)
                pred = pred[: len(yb)]
                mse = F.mse_loss(pred, yb)
                fit_loss = mse + cfg.rank_loss * ranking_loss(pred, yb, cfg.rank_margin) if cfg.rank_loss else mse
                nll = F.nll_loss(log_probs.flatten(0, 1), xb.flatten())
                loss = cfg.trade_off * fit_loss + (1 - cfg.trade_off) * nll  # paper Eq. 1, reference §2.1
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
                optimizer.step()
                sums += torch.stack([loss, mse, nll]).detach() * len(yb)
            logs = dict(zip(("loss", "mse", "nll"), (sums / len(seqs)).tolist()))
            if progress is not None:
                progress(epoch, logs)
    seconds = time.perf_counter() - start
    held = (evaluate(model, x[hold], y[hold], space, k=cfg.precision_k) if n_hold >= 2
            else dict.fromkeys(METRICS, float("nan")))
    return {**{f"train_{k}": v for k, v in logs.items()}, **held, "n_train": len(train), "n_holdout": n_hold,
            "epochs": cfg.epochs, "seconds_per_epoch": seconds / max(cfg.epochs, 1)}


def evaluate(model: NAO, token_seqs: Sequence[Sequence[int]], scores: Sequence[float], space: TokenSpace,
             *, k: int = 10) -> dict:
    """Predictor ranking metrics and decoder mean Hamming distance D(E(x)) vs x (reference §2.3), in eval mode.

    ``scores`` only need the right order (higher = better); precision@k uses ``min(k, len(token_seqs))``.
    """
    x = check_sequences(model, token_seqs, space)
    y = check_scores(scores, len(x))
    device = next(model.parameters()).device
    with evaluating(model), torch.no_grad():
        tokens = torch.from_numpy(x).to(device)
        pred = model.predict(tokens).cpu().numpy()
        decoded = model.reconstruct(tokens).cpu().numpy()
    return {"pairwise_accuracy": pairwise_accuracy(pred, y), "kendall_tau": kendall_tau(pred, y),
            "spearman_rho": spearman_rho(pred, y), "precision_at_k": precision_at_k(pred, y, min(k, len(x))),
            "hamming": mean_hamming(decoded, x)}
