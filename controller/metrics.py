"""Controller quality metrics (reference §2.3): pure functions on NumPy arrays, meant for held-out architectures.

``pred`` are predicted scores, ``true`` the measured ones (higher = better for both). Pair-based metrics
are O(n^2) in memory, fine for the few hundred to few thousand architectures of a search.
"""
from __future__ import annotations

import numpy as np

from .space import ControllerInputError


def _vectors(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    if pred.shape != true.shape or pred.ndim != 1:
        raise ControllerInputError(f"metrics need two 1-D arrays of equal length, got {pred.shape} and {true.shape}")
    return pred, true


def _pair_signs(pred, true) -> tuple[np.ndarray, np.ndarray]:
    """sign(a_i - a_j) of both arrays over all pairs i < j."""
    pred, true = _vectors(pred, true)
    i, j = np.triu_indices(len(pred), k=1)
    return np.sign(pred[i] - pred[j]), np.sign(true[i] - true[j])


def pairwise_accuracy(pred, true) -> float:
    """Fraction of pairs that ``pred`` orders as ``true`` does (paper 4.1, acc_f).

    Ties: pairs tied in ``true`` have no order to recover and are left out; a pair tied in ``pred`` only
    counts one half (a coin flip). NaN when every pair is tied in ``true`` (or fewer than two items).
    """
    sp, st = _pair_signs(pred, true)
    keep = st != 0
    return float(np.mean((1 + sp[keep] * st[keep]) / 2)) if keep.any() else float("nan")


def kendall_tau(pred, true) -> float:
    """Kendall tau-b: (concordant - discordant) / sqrt(pairs untied in pred * pairs untied in true).

    NaN when either array is constant.
    """
    sp, st = _pair_signs(pred, true)
    denom = np.sqrt(float(np.count_nonzero(sp)) * float(np.count_nonzero(st)))
    return float(np.sum(sp * st) / denom) if denom > 0 else float("nan")


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1; tied values share their average rank."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(len(a))
    _, inverse = np.unique(a, return_inverse=True)
    return np.bincount(inverse, weights=ranks)[inverse] / np.bincount(inverse)[inverse]


def spearman_rho(pred, true) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks. NaN when either array is constant."""
    pred, true = _vectors(pred, true)
    rp, rt = _ranks(pred) - (len(pred) - 1) / 2, _ranks(true) - (len(true) - 1) / 2
    denom = np.sqrt(np.sum(rp * rp) * np.sum(rt * rt))
    return float(np.sum(rp * rt) / denom) if denom > 0 else float("nan")


def precision_at_k(pred, true, k: int) -> float:
    """|top-k by ``pred`` ∩ top-k by ``true``| / k. Ties at the k-th place go to the lower index."""
    pred, true = _vectors(pred, true)
    if not 1 <= k <= len(pred):
        raise ControllerInputError(f"precision@k needs 1 <= k <= {len(pred)} (the number of items), got k = {k}")
    top = lambda a: set(np.argsort(-a, kind="stable")[:k].tolist())  # noqa: E731
    return len(top(pred) & top(true)) / k


def mean_hamming(decoded, target) -> float:
    """Mean number of positions where D(E(x)) differs from x (tokens, not a fraction; reference §2.3)."""
    decoded, target = np.asarray(decoded), np.asarray(target)
    if decoded.shape != target.shape or decoded.ndim != 2:
        raise ControllerInputError(f"hamming needs two [n, length] arrays, got {decoded.shape} and {target.shape}")
    return float(np.mean(np.sum(decoded != target, axis=1)))
