"""Weighted forms of the metrics for the bootstrap over perturbations: every resample is a row of
perturbation weights, and a block of resamples is scored at once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from coreperturb._registry import Registry

WeightedMetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, np.ndarray], np.ndarray]
WEIGHTED_METRICS: Registry[WeightedMetricFn] = Registry("weighted metric")
"""Metrics with row weights ``W`` of shape ``(B, n)``, computed for B weightings at once: a bootstrap
resample over perturbations is the weighting "how often each perturbation was drawn", so every resample
is a row of ``W`` and no metric is recomputed in a Python loop. Integer weights give exactly the value of
the metric on the resample with its rows repeated."""


def _segments(sorted_keys: list[np.ndarray]) -> np.ndarray:
    """Start positions of runs of equal keys in already sorted arrays."""
    n = len(sorted_keys[0])
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    for k in sorted_keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def _sum_segments(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(x, starts, axis=1) if x.shape[1] else np.zeros((x.shape[0], 0))


@WEIGHTED_METRICS.register("auroc")
def _w_auroc(
    y: np.ndarray, s: np.ndarray, g: np.ndarray, p: np.ndarray, thr: float, w: np.ndarray
) -> np.ndarray:
    order = np.argsort(s, kind="mergesort")
    starts = _segments([s[order]])
    ys, ws = y[order], w[:, order]
    pos = _sum_segments(ws * ys, starts)
    neg = _sum_segments(ws * (1 - ys), starts)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


@WEIGHTED_METRICS.register("macro_per_gene_auroc")
def _w_macro_gene(
    y: np.ndarray, s: np.ndarray, g: np.ndarray, p: np.ndarray, thr: float, w: np.ndarray
) -> np.ndarray:
    codes = pd.factorize(g)[0]
    order = np.lexsort((s, codes))
    cs, ss = codes[order], s[order]
    starts = _segments([cs, ss])
    gene_of_group = cs[starts]
    gene_starts = _segments([gene_of_group])
    ys, ws = y[order], w[:, order]
    pos = _sum_segments(ws * ys, starts)
    neg = _sum_segments(ws * (1 - ys), starts)
    cum = np.cumsum(neg, axis=1)
    first = np.zeros(cum.shape[1], dtype=np.int64)
    first[gene_starts] = 1
    grp = np.cumsum(first) - 1  # gene segment of each group
    offset_at_start = np.concatenate([np.zeros((cum.shape[0], 1)), cum[:, gene_starts[1:] - 1]], axis=1)
    below = cum - neg - offset_at_start[:, grp]
    num = _sum_segments(pos * (below + 0.5 * neg), gene_starts)
    wpos = _sum_segments(pos, gene_starts)
    wneg = _sum_segments(neg, gene_starts)
    ok = (wpos > 0) & (wneg > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(ok, num / np.where(ok, wpos * wneg, 1.0), 0.0)
        n_ok = ok.sum(axis=1)
        return np.where(n_ok > 0, auc.sum(axis=1) / np.maximum(n_ok, 1), np.nan)


@WEIGHTED_METRICS.register("auprc")
def _w_auprc(
    y: np.ndarray, s: np.ndarray, g: np.ndarray, p: np.ndarray, thr: float, w: np.ndarray
) -> np.ndarray:
    order = np.argsort(-s, kind="mergesort")
    starts = _segments([s[order]])
    ys, ws = y[order], w[:, order]
    tp = np.cumsum(_sum_segments(ws * ys, starts), axis=1)
    fp = np.cumsum(_sum_segments(ws * (1 - ys), starts), axis=1)
    total = tp[:, -1:] if tp.shape[1] else np.zeros((w.shape[0], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.nan_to_num(tp / (tp + fp))
        rec = tp / total
        d_rec = np.diff(np.concatenate([np.zeros((w.shape[0], 1)), rec], axis=1), axis=1)
        return np.where(total[:, 0] > 0, (d_rec * prec).sum(axis=1), np.nan)


@WEIGHTED_METRICS.register("f1")
def _w_f1(
    y: np.ndarray, s: np.ndarray, g: np.ndarray, p: np.ndarray, thr: float, w: np.ndarray
) -> np.ndarray:
    pred = (s >= thr).astype(np.float64)
    tp = w @ (pred * y)
    denom = w @ pred + w @ y
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, 0.0)


@WEIGHTED_METRICS.register("ece")
def _w_ece(
    y: np.ndarray, s: np.ndarray, g: np.ndarray, p: np.ndarray, thr: float, w: np.ndarray
) -> np.ndarray:
    sc = np.clip(s, 0, 1)
    edges = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(sc, edges[1:-1], right=False), 0, 9)
    onehot = np.zeros((len(s), 10))
    onehot[np.arange(len(s)), idx] = 1.0
    gap = np.abs(w @ (onehot * y[:, None]) - w @ (onehot * sc[:, None])).sum(axis=1)
    total = w.sum(axis=1)
    return gap / np.maximum(total, 1)


@WEIGHTED_METRICS.register("brier")
def _w_brier(
    y: np.ndarray, s: np.ndarray, g: np.ndarray, p: np.ndarray, thr: float, w: np.ndarray
) -> np.ndarray:
    return (w @ ((np.clip(s, 0, 1) - y) ** 2)) / np.maximum(w.sum(axis=1), 1)


def bootstrap_draws(
    perturbations: np.ndarray, n_bootstrap: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Resample perturbations with replacement ``n_bootstrap`` times.

    Returns:
        ``(counts, codes)``: ``counts[b, k]`` = how often perturbation ``k`` was drawn in resample ``b``
        (the same draws as concatenating ``rng.integers`` picks resample by resample), and each row's
        perturbation code ``k``.
    """
    uniq, codes = np.unique(perturbations, return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = np.empty((n_bootstrap, len(uniq)), dtype=np.float64)
    for b in range(n_bootstrap):
        counts[b] = np.bincount(rng.integers(0, len(uniq), len(uniq)), minlength=len(uniq))
    return counts, codes


__all__ = ["WEIGHTED_METRICS", "bootstrap_draws"]
