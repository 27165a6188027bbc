"""Controller quality metrics (reference §2.3): pure functions on NumPy arrays, meant for held-out architectures.

``pred`` are predicted scores, ``true`` the measured ones (higher = better for both). Rank statistics come from
``scipy.stats`` (O(n log n)), so they serve the 15,625 cells of NAS-Bench-201 as well as a search's pool.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from .space import ControllerInputError


def _vectors(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    if pred.shape != true.shape or pred.ndim != 1:
        raise ControllerInputError(f"metrics need two 1-D arrays of equal length, got {pred.shape} and {true.shape}")
    return pred, true


def _tied_pairs(a: np.ndarray) -> int:
    """Pairs i < j with a_i == a_j."""
    counts = np.unique(a, return_counts=True)[1].astype(float)
    return int(np.sum(counts * (counts - 1) / 2))


def _constant(a: np.ndarray) -> bool:
    return len(a) < 2 or bool(np.all(a == a[0]))


def kendall_tau(pred, true) -> float:
    """Kendall tau-b: (concordant - discordant) / sqrt(pairs untied in pred * pairs untied in true).

    NaN when either array is constant.
    """
    pred, true = _vectors(pred, true)
    if _constant(pred) or _constant(true):
        return float("nan")
    return float(stats.kendalltau(pred, true, variant="b").statistic)


def pairwise_accuracy(pred, true) -> float:
    """Fraction of pairs that ``pred`` orders as ``true`` does (paper 4.1, acc_f).

    Ties: pairs tied in ``true`` have no order to recover and are left out; a pair tied in ``pred`` only
    counts one half (a coin flip). NaN when every pair is tied in ``true`` (or fewer than two items).
    With C concordant and D discordant pairs out of the U pairs untied in ``true``, that is 1/2 + (C - D) / 2U,
    and C - D is tau-b times its denominator.
    """
    pred, true = _vectors(pred, true)
    pairs = len(pred) * (len(pred) - 1) // 2
    untied_true, untied_pred = pairs - _tied_pairs(true), pairs - _tied_pairs(pred)
    if untied_true == 0:
        return float("nan")
    if untied_pred == 0:
        return 0.5
    c_minus_d = kendall_tau(pred, true) * np.sqrt(float(untied_pred) * float(untied_true))
    return float(0.5 + c_minus_d / (2 * untied_true))


def spearman_rho(pred, true) -> float:
    """Spearman's rho: Pearson correlation of the (tie-averaged) ranks. NaN when either array is constant."""
    pred, true = _vectors(pred, true)
    if _constant(pred) or _constant(true):
        return float("nan")
    return float(stats.spearmanr(pred, true).statistic)


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
