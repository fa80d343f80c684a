"""Metrics: pooled and macro per-gene AUROC, AUPRC, F1, calibration, predicted vs true positive rate.

Each metric is registered by name in :data:`METRICS` and takes ``(labels, scores, genes, perturbations,
threshold)``; :func:`evaluate` computes them all, with bootstrap CIs over perturbations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from coreperturb.registry import Registry

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], float]
METRICS: Registry[MetricFn] = Registry("metric")


def _grouped_auroc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    """Mean AUROC over groups having both classes, and how many groups counted.

    Uses the rank-sum (Mann-Whitney) identity per group with average ranks for ties, vectorised over groups;
    equal to averaging ``sklearn.metrics.roc_auc_score`` per group.
    """
    df = pd.DataFrame({"g": groups, "y": labels.astype(np.int64), "s": scores})
    df["r"] = df.groupby("g", sort=False)["s"].rank(method="average")
    agg = df.groupby("g", sort=False).agg(n=("y", "size"), npos=("y", "sum"))
    rsum = df.loc[df["y"] == 1].groupby("g", sort=False)["r"].sum()
    agg["rpos"] = rsum.reindex(agg.index).fillna(0.0)
    ok = (agg["npos"] > 0) & (agg["npos"] < agg["n"])
    agg = agg.loc[ok]
    if agg.empty:
        return float("nan"), 0
    nneg = agg["n"] - agg["npos"]
    auc = (agg["rpos"] - agg["npos"] * (agg["npos"] + 1) / 2) / (agg["npos"] * nneg)
    return float(auc.mean()), len(agg)


def per_group_auroc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> pd.Series:
    """AUROC of every group with both classes (index: group)."""
    out = {}
    for g, idx in pd.Series(np.arange(len(groups))).groupby(groups).indices.items():
        y = labels[idx]
        if 0 < y.sum() < len(y):
            out[g] = roc_auc_score(y, scores[idx])
    return pd.Series(out, dtype=float)


@METRICS.register("auroc")
def auroc(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Pooled AUROC over all test pairs."""
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


@METRICS.register("auprc")
def auprc(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Pooled average precision."""
    return float(average_precision_score(y, s)) if y.sum() > 0 else float("nan")


@METRICS.register("macro_per_gene_auroc")
def macro_per_gene_auroc(
    y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float
) -> float:
    """PerturbQA's metric: AUROC over test pairs within each gene with both classes, averaged over genes."""
    return _grouped_auroc(y, s, genes)[0]


@METRICS.register("n_genes_per_gene_auroc")
def n_genes_per_gene_auroc(
    y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float
) -> float:
    """How many genes entered the macro per-gene AUROC."""
    return float(_grouped_auroc(y, s, genes)[1])


@METRICS.register("macro_per_perturbation_auroc")
def macro_per_perturbation_auroc(
    y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float
) -> float:
    """AUROC over genes within each test perturbation with both classes, averaged over perturbations."""
    return _grouped_auroc(y, s, perts)[0]


@METRICS.register("f1")
def f1(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """F1 at the predictor's decision threshold (chosen on training data)."""
    pred = s >= thr
    tp = float((pred & (y == 1)).sum())
    denom = float(pred.sum() + (y == 1).sum())
    return 2 * tp / denom if denom else 0.0


@METRICS.register("accuracy")
def accuracy(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Accuracy at the decision threshold."""
    return float(((s >= thr) == (y == 1)).mean())


def reliability_bins(y: np.ndarray, s: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width reliability bins: count, mean predicted probability and observed rate per bin."""
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(s, edges[1:-1], right=False), 0, n_bins - 1)
    df = pd.DataFrame({"bin": idx, "p": s, "y": y})
    agg = df.groupby("bin").agg(count=("y", "size"), mean_pred=("p", "mean"), frac_pos=("y", "mean"))
    agg = agg.reindex(range(n_bins))
    agg.insert(0, "lower", edges[:-1])
    agg.insert(1, "upper", edges[1:])
    agg["count"] = agg["count"].fillna(0).astype(int)
    return agg.reset_index(drop=True)


@METRICS.register("ece")
def ece(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Expected calibration error over 10 equal-width bins (count-weighted |observed − predicted|)."""
    rb = reliability_bins(y, np.clip(s, 0, 1)).dropna()
    return float((rb["count"] * (rb["frac_pos"] - rb["mean_pred"]).abs()).sum() / max(len(y), 1))


@METRICS.register("brier")
def brier(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Brier score (mean squared error of the probability)."""
    return float(np.mean((np.clip(s, 0, 1) - y) ** 2))


@METRICS.register("pred_pos_rate")
def pred_pos_rate(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Fraction of test pairs predicted positive at the decision threshold."""
    return float((s >= thr).mean())


@METRICS.register("true_pos_rate")
def true_pos_rate(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Fraction of test pairs that are positive (the rate to compare pred_pos_rate with)."""
    return float(y.mean())


@METRICS.register("mean_score")
def mean_score(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Mean predicted probability (calibrated methods match true_pos_rate)."""
    return float(np.mean(s))


DEFAULT_METRICS: tuple[str, ...] = (
    "auroc",
    "auprc",
    "macro_per_gene_auroc",
    "n_genes_per_gene_auroc",
    "macro_per_perturbation_auroc",
    "f1",
    "accuracy",
    "ece",
    "brier",
    "pred_pos_rate",
    "true_pos_rate",
    "mean_score",
)
BOOTSTRAP_METRICS: tuple[str, ...] = ("auroc", "auprc", "macro_per_gene_auroc", "f1", "ece", "brier")


def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    genes: np.ndarray,
    perturbations: np.ndarray,
    threshold: float = 0.5,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    n_bootstrap: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Compute metrics, optionally with percentile bootstrap 95% CIs over perturbations.

    Returns:
        Frame with columns metric, value, ci_low, ci_high (CIs NaN where not bootstrapped).
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(genes).astype(str)
    p = np.asarray(perturbations).astype(str)
    rows = [{"metric": m, "value": METRICS.get(m)(y, s, g, p, threshold)} for m in metrics]
    out = pd.DataFrame(rows)
    out["ci_low"] = np.nan
    out["ci_high"] = np.nan
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        uniq, inv = np.unique(p, return_inverse=True)
        members = pd.Series(np.arange(len(p))).groupby(inv).indices
        boot: dict[str, list[float]] = {m: [] for m in metrics if m in BOOTSTRAP_METRICS}
        for _ in range(n_bootstrap):
            pick = rng.integers(0, len(uniq), len(uniq))
            idx = np.concatenate([members[k] for k in pick])
            for m in boot:
                boot[m].append(METRICS.get(m)(y[idx], s[idx], g[idx], p[idx], threshold))
        for m, vals in boot.items():
            arr = np.asarray(vals, dtype=float)
            arr = arr[~np.isnan(arr)]
            if len(arr):
                out.loc[out["metric"] == m, ["ci_low", "ci_high"]] = np.percentile(arr, [2.5, 97.5])
    return out


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold on ``scores`` maximising F1 (used on training out-of-fold predictions)."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.sum() == 0:
        return 0.5
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(ys) + 1)
    f1s = 2 * tp / (k + y.sum())
    last = np.r_[ss[1:] != ss[:-1], True]  # only cut between distinct scores
    f1s = np.where(last, f1s, -1)
    return float(ss[int(np.argmax(f1s))])
