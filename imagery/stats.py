"""Numbers every part shares (numpy only): ranking quality of scores and a small logistic fit.

One rule each: AUROC (ties count one half), sensitivity at a specificity, and an L2-regularised
logistic regression by Newton's method, used by the real-chip benchmark, the context verifier's
score fusion and the generator's realism measure alike.
"""

from __future__ import annotations

import math

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve, P(score of a 1 > score of a 0) with ties counting one half;
    NaN when a class is missing."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, np.float64))
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def threshold_at_specificity(neg_scores: np.ndarray, spec: float) -> float:
    """The lowest threshold (scores strictly above it are flagged) that keeps at least ``spec``
    of the negatives unflagged."""
    neg = np.sort(np.asarray(neg_scores))
    k = min(int(math.ceil(spec * neg.size)), neg.size)
    return float(neg[k - 1]) if k > 0 else float("-inf")


def sensitivity_at_specificity(scores: np.ndarray, labels: np.ndarray, spec: float) -> float:
    """Share of positives scoring above ``threshold_at_specificity`` of the negatives."""
    scores, labels = np.asarray(scores), np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float((scores[labels] > threshold_at_specificity(scores[~labels], spec)).mean())


def logistic_fit(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """Weights [F+1] (the last is the bias, not regularised) of an L2-regularised logistic
    regression of ``y`` (0/1 or a probability) on ``x`` [N,F], by Newton steps; deterministic."""
    xb = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
    y = np.asarray(y, np.float64)
    w = np.zeros(xb.shape[1])
    reg = np.full(xb.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w
