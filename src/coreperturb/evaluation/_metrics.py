"""Metrics: pooled and macro per-gene AUROC, AUPRC, F1, calibration, predicted vs true positive rate, and
the ranking metrics of the way users read results (top genes per perturbation, top perturbations per gene).

Each metric is registered by name in :data:`METRICS` and takes ``(labels, scores, genes, perturbations,
threshold)``; the ranking metrics of :data:`RANKING_METRICS` also take each row's gene prior and effect
score (:mod:`coreperturb.predictors._effect`). :func:`evaluate` computes them all, with bootstrap CIs over
perturbations.

Specificity is measured as **excess DE@k** (``excess_de_at_10`` / ``_50``): over the k top-ranked genes of
each perturbation, (Σ label − Σ prior) / k, averaged over perturbations: how many more of the listed genes
respond than their base rates predict. A ranking built from gene-level information alone (the prior, the
prior below a threshold, rarity) scores about 0, so the metric cannot reward the prior.

The thresholded ``specific_precision_at_K`` of earlier releases is kept for comparison only: it counts DE
genes whose prior is below :data:`SPECIFIC_MAX_RATE` (0.2), and so rewards genes just under the threshold:
ranking by the prior itself among genes below 0.2, which knows nothing about the perturbation, scores 0.14
on training perturbations, far above any real ranking.

This module runs over 500 lines because every registered metric, its bootstrap and its tie handling live
beside each other, so that a metric and its confidence interval cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coreperturb._deprecation import keyword_options
from coreperturb._registry import Registry
from coreperturb.evaluation._bootstrap import WEIGHTED_METRICS, bootstrap_draws
from coreperturb.evaluation._calls import CALL_METRICS
from coreperturb.evaluation._info import MetricInfo

MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], float]
METRICS: Registry[MetricFn] = Registry("metric")


def grouped_auroc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    """Mean AUROC over groups having both classes, and how many groups counted.

    Uses the rank-sum (Mann-Whitney) identity per group with average ranks for ties, vectorised over groups;
    equal to averaging ``sklearn.metrics.roc_auc_score`` per group. Rows without a finite score are left
    out (a rank of NaN would count as a miss).
    """
    s = np.asarray(scores, dtype=np.float64)
    scored = np.isfinite(s)
    if not scored.all():
        labels, s, groups = np.asarray(labels)[scored], s[scored], np.asarray(groups)[scored]
    df = pd.DataFrame({"g": groups, "y": np.asarray(labels).astype(np.int64), "s": s})
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
    from sklearn.metrics import roc_auc_score  # scikit-learn loads only when a metric is computed

    out = {}
    for g, idx in pd.Series(np.arange(len(groups))).groupby(groups).indices.items():
        y = labels[idx]
        if 0 < y.sum() < len(y):
            out[g] = roc_auc_score(y, scores[idx])
    return pd.Series(out, dtype=float)


@METRICS.register(
    "auroc",
    MetricInfo(
        "pooled AUROC",
        "AUROC over all test pairs pooled",
        1.0,
        bootstrap=True,
        why_missing="the test rows hold one class only",
    ),
)
def auroc(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Pooled AUROC over all test pairs."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


@METRICS.register(
    "auprc",
    MetricInfo(
        "AUPRC",
        "average precision over all test pairs pooled",
        1.0,
        bootstrap=True,
        why_missing="no test row is positive",
    ),
)
def auprc(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Pooled average precision."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s)) if y.sum() > 0 else float("nan")


@METRICS.register(
    "macro_per_gene_auroc",
    MetricInfo(
        "per-gene AUROC",
        "AUROC across test perturbations within each gene, averaged over genes",
        1.0,
        bootstrap=True,
        why_missing="no test gene has both DE and non-DE test perturbations",
    ),
)
def macro_per_gene_auroc(
    y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float
) -> float:
    """PerturbQA's metric: AUROC over test pairs within each gene with both classes, averaged over genes."""
    return grouped_auroc(y, s, genes)[0]


@METRICS.register(
    "n_genes_per_gene_auroc",
    MetricInfo("genes", "genes with both classes, which the per-gene AUROC averages over"),
)
def n_genes_per_gene_auroc(
    y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float
) -> float:
    """How many genes entered the macro per-gene AUROC."""
    return float(grouped_auroc(y, s, genes)[1])


@METRICS.register(
    "macro_per_perturbation_auroc",
    MetricInfo("per-perturbation AUROC", "AUROC across genes within each test perturbation, averaged", 1.0),
)
def macro_per_perturbation_auroc(
    y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float
) -> float:
    """AUROC over genes within each test perturbation with both classes, averaged over perturbations."""
    return grouped_auroc(y, s, perts)[0]


@METRICS.register(
    "f1",
    MetricInfo("F1", "F1 at the decision threshold chosen on training data", 1.0, bootstrap=True),
)
def f1(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """F1 at the predictor's decision threshold (chosen on training data)."""
    pred = s >= thr
    tp = float((pred & (y == 1)).sum())
    denom = float(pred.sum() + (y == 1).sum())
    return 2 * tp / denom if denom else 0.0


@METRICS.register(
    "accuracy",
    MetricInfo("accuracy", "accuracy at the decision threshold", 1.0),
)
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


@METRICS.register(
    "ece",
    MetricInfo("ECE", "expected calibration error over 10 equal-width bins", 0.0, bootstrap=True),
)
def ece(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Expected calibration error over 10 equal-width bins (count-weighted |observed − predicted|)."""
    rb = reliability_bins(y, np.clip(s, 0, 1)).dropna()
    return float((rb["count"] * (rb["frac_pos"] - rb["mean_pred"]).abs()).sum() / max(len(y), 1))


@METRICS.register(
    "brier",
    MetricInfo("Brier", "mean squared error of the probabilities", 0.0, bootstrap=True),
)
def brier(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Brier score (mean squared error of the probability)."""
    return float(np.mean((np.clip(s, 0, 1) - y) ** 2))


def _mean(a: np.ndarray) -> float:
    """The mean of ``a``; NaN, without numpy's empty-slice warning, when there is no row."""
    return float(np.mean(a)) if len(a) else float("nan")


@METRICS.register(
    "pred_pos_rate",
    MetricInfo("predicted +rate", "share of pairs called positive at the threshold"),
)
def pred_pos_rate(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Fraction of test pairs predicted positive at the decision threshold."""
    return _mean(s >= thr)


@METRICS.register(
    "true_pos_rate",
    MetricInfo("true +rate", "share of test pairs that are positive"),
)
def true_pos_rate(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Fraction of test pairs that are positive (the rate to compare pred_pos_rate with)."""
    return _mean(y)


@METRICS.register(
    "mean_score",
    MetricInfo("mean score", "mean predicted probability (calibrated methods match the true rate)"),
)
def mean_score(y: np.ndarray, s: np.ndarray, genes: np.ndarray, perts: np.ndarray, thr: float) -> float:
    """Mean predicted probability (calibrated methods match true_pos_rate)."""
    return _mean(s)


DEFAULT_METRICS: tuple[str, ...] = tuple(n for n in METRICS.in_order() if METRICS.info(n).default)
"""The metrics :func:`evaluate` computes by default, in the order they were registered."""
BOOTSTRAP_METRICS: tuple[str, ...] = tuple(n for n in METRICS.in_order() if METRICS.info(n).bootstrap)


SPECIFIC_MAX_RATE = 0.2
"""A DE gene is a perturbation-specific hit when its prior (training DE rate in the line) is below this."""


def topk_hits(groups: np.ndarray, key: np.ndarray, hits: np.ndarray, k: int) -> pd.DataFrame:
    """Per group, the expected number of hits among its ``k`` highest-``key`` rows.

    Ties are broken at random, in expectation: a block of ``m`` tied rows straddling the cut contributes
    ``(k - above) / m`` of each of its hits, so a constant key scores exactly the group's hit rate (what a
    random order gives). NaN keys rank last.

    Returns:
        Frame indexed by group with ``hits_at_k`` (expected hits in the top k), ``n`` (rows), ``n_hits``.
    """
    s = np.where(np.isfinite(key), key, -np.inf)
    df = pd.DataFrame({"g": groups, "s": s, "h": np.asarray(hits, dtype=np.float64)})
    above = df.groupby("g", sort=False)["s"].rank(method="min", ascending=False).to_numpy() - 1
    ties = df.groupby(["g", "s"], sort=False)["s"].transform("size").to_numpy()
    w = np.clip((k - above) / ties, 0.0, 1.0)
    df["wh"] = w * df["h"].to_numpy()
    return df.groupby("g", sort=False).agg(hits_at_k=("wh", "sum"), n=("h", "size"), n_hits=("h", "sum"))


def specific_hits(labels: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """DE rows whose gene's prior is below :data:`SPECIFIC_MAX_RATE` (NaN prior: not specific)."""
    pr = np.asarray(prior, dtype=np.float64)
    return (np.asarray(labels) == 1) & (np.nan_to_num(pr, nan=1.0) < SPECIFIC_MAX_RATE)


RankingFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], pd.Series]


@dataclass(frozen=True)
class RankingMetric:
    """A metric of how a user reads a ranked list: a value per unit (perturbation or gene), averaged.

    - ``precision_at_K``: per perturbation with at least one DE gene, the share of DE genes among its K
      top-scored genes (of fewer than K rows, among all its rows);
    - ``excess_de_at_K``: per perturbation, (Σ label − Σ prior) / K over its K genes ranked first by the
      ranking key (the default ranking, ``excess = p_de - p_prior``); about 0 for any gene-level ranking;
    - ``specific_precision_at_K`` (for comparison only: a threshold on the prior has a loophole, see the
      module docstring): the same for DE genes with prior < 0.2, genes ranked by the ranking key;
      ``p_de_specific_precision_at_K`` ranks them by the score itself;
    - ``macro_per_perturbation_auprc``: average precision of the genes within each perturbation with both
      classes;
    - ``per_gene_recall_at_10``: per gene with at least one DE perturbation, the share of its DE
      perturbations among the 10 perturbations that score highest on it.

    Ties are broken at random in expectation (:func:`topk_hits`), so a score that is constant within a
    perturbation (gene frequency's effect) gets what a random order gets.

    Attributes:
        fn: ``(labels, scores, genes, perturbations, prior, key) -> values`` (a Series indexed by unit;
            NaN = the unit does not count); ``key`` is the ranking key of the default ranking.
        unit: ``perturbation`` (genes ranked within each perturbation) or ``gene`` (perturbations ranked
            within each gene).
    """

    fn: RankingFn
    unit: str


RANKING_METRICS: Registry[RankingMetric] = Registry("ranking metric")


def _precision_at(k: int, *, use_effect: bool, specific: bool) -> RankingFn:
    def fn(
        y: np.ndarray, s: np.ndarray, g: np.ndarray, p: np.ndarray, prior: np.ndarray, eff: np.ndarray
    ) -> pd.Series:
        hits = specific_hits(y, prior) if specific else (y == 1)
        t = topk_hits(p, eff if use_effect else s, hits, k)
        # a perturbation without any hit among its rows cannot be ranked well or badly: it does not count
        return (t["hits_at_k"] / np.minimum(k, t["n"])).where(t["n_hits"] > 0)

    return fn


def _excess_at(k: int) -> RankingFn:
    def fn(
        y: np.ndarray, s: np.ndarray, g: np.ndarray, p: np.ndarray, prior: np.ndarray, key: np.ndarray
    ) -> pd.Series:
        # each listed gene counts its label minus its base rate; a gene without a prior counts 0
        pr = np.asarray(prior, dtype=np.float64)
        surplus = np.where(np.isfinite(pr), (np.asarray(y) == 1) - pr, 0.0)
        t = topk_hits(p, key, surplus, k)
        return t["hits_at_k"] / np.minimum(k, t["n"])

    return fn


def excess_de_at(
    labels: np.ndarray, prior: np.ndarray, key: np.ndarray, perturbations: np.ndarray, k: int = 10
) -> float:
    """Excess DE@k of one ranking: over each perturbation's ``k`` highest-``key`` genes, (Σ label − Σ prior)
    / k, averaged over perturbations (ties broken at random in expectation)."""
    v = _excess_at(k)(
        np.asarray(labels, dtype=np.int64),
        np.zeros(len(labels)),
        np.zeros(len(labels)),
        np.asarray(perturbations).astype(str),
        np.asarray(prior, dtype=np.float64),
        np.asarray(key, dtype=np.float64),
    )
    return float(v.mean()) if len(v) else float("nan")


def _per_perturbation_auprc(
    y: np.ndarray, s: np.ndarray, g: np.ndarray, p: np.ndarray, prior: np.ndarray, eff: np.ndarray
) -> pd.Series:
    from sklearn.metrics import average_precision_score

    out = {}
    for key, idx in pd.Series(np.arange(len(p))).groupby(p, sort=False).indices.items():
        yy = y[idx]
        out[key] = float(average_precision_score(yy, s[idx])) if 0 < yy.sum() < len(yy) else np.nan
    return pd.Series(out, dtype=float)


def _per_gene_recall_at_10(
    y: np.ndarray, s: np.ndarray, g: np.ndarray, p: np.ndarray, prior: np.ndarray, eff: np.ndarray
) -> pd.Series:
    t = topk_hits(g, s, y == 1, 10)
    return (t["hits_at_k"] / t["n_hits"]).where(t["n_hits"] > 0)


for _k in (10, 50):
    RANKING_METRICS.register(
        f"excess_de_at_{_k}",
        MetricInfo(
            f"excess DE@{_k}",
            f"over each perturbation's {_k} top-ranked genes, (sum of labels - sum of priors) / {_k}",
            best=None,
            bootstrap=True,
            de_only=True,
            why_missing="no test gene has a prior",
        ),
    )(RankingMetric(_excess_at(_k), "perturbation"))
RANKING_METRICS.register(
    "macro_per_perturbation_auprc",
    MetricInfo(
        "per-perturbation AUPRC",
        "average precision of the genes within each perturbation",
        1.0,
        bootstrap=True,
    ),
)(RankingMetric(_per_perturbation_auprc, "perturbation"))
for _k in (10, 50):
    RANKING_METRICS.register(
        f"precision_at_{_k}",
        MetricInfo(
            f"P@{_k}", f"DE genes among each perturbation's {_k} top-scored genes", 1.0, bootstrap=True
        ),
    )(RankingMetric(_precision_at(_k, use_effect=False, specific=False), "perturbation"))
for _k in (10, 50):
    RANKING_METRICS.register(
        f"specific_precision_at_{_k}",
        MetricInfo(
            f"specific P@{_k} (thresholded; for comparison)",
            f"DE genes with prior < {SPECIFIC_MAX_RATE} among the {_k} top-ranked (rewards the prior)",
            bootstrap=True,
            de_only=True,
            why_missing=f"no test perturbation has a perturbation-specific DE gene (prior < {SPECIFIC_MAX_RATE})",
        ),
    )(RankingMetric(_precision_at(_k, use_effect=True, specific=True), "perturbation"))
for _k in (10, 50):
    RANKING_METRICS.register(
        f"p_de_specific_precision_at_{_k}",
        MetricInfo(
            f"specific P@{_k} (p_de)",
            f"DE genes with prior < {SPECIFIC_MAX_RATE} among the {_k} genes of highest p_de",
            bootstrap=True,
            de_only=True,
        ),
    )(RankingMetric(_precision_at(_k, use_effect=False, specific=True), "perturbation"))
RANKING_METRICS.register(
    "per_gene_recall_at_10",
    MetricInfo(
        "per-gene R@10",
        "share of a gene's DE perturbations among its 10 top-scored perturbations",
        1.0,
        bootstrap=True,
        de_only=True,
        why_missing="no test gene has a DE test perturbation",
    ),
)(RankingMetric(_per_gene_recall_at_10, "gene"))

DEFAULT_RANKING_METRICS: tuple[str, ...] = tuple(
    n for n in RANKING_METRICS.in_order() if RANKING_METRICS.info(n).default
)
"""Ranking metrics :func:`evaluate` computes when it is given priors and effects (all bootstrapped)."""


def ranking_metric(
    name: str,
    labels: np.ndarray,
    scores: np.ndarray,
    genes: np.ndarray,
    perturbations: np.ndarray,
    prior: np.ndarray,
    effect: np.ndarray,
) -> float:
    """The mean over units of one registered ranking metric (NaN when no unit counts)."""
    v = RANKING_METRICS.get(name).fn(
        np.asarray(labels, dtype=np.int64),
        np.asarray(scores, dtype=np.float64),
        np.asarray(genes).astype(str),
        np.asarray(perturbations).astype(str),
        np.asarray(prior, dtype=np.float64),
        np.asarray(effect, dtype=np.float64),
    )
    v = v.dropna()
    return float(v.mean()) if len(v) else float("nan")


def _bootstrap_ranking(
    name: str,
    arrays: tuple[np.ndarray, ...],
    counts: np.ndarray,
    uniq: np.ndarray,
    n_bootstrap: int,
    seed: int,
) -> np.ndarray:
    """Bootstrap values of a ranking metric: the weighted mean of its per-unit values under each resample.

    Per-perturbation metrics use the perturbation resamples of the other metrics (``counts``, over the
    sorted perturbations ``uniq``). A per-gene metric resamples genes, the units it averages over:
    resampling perturbations would put one DE perturbation into a gene's list twice and so change what
    "its 10 best perturbations" can hold.
    """
    metric = RANKING_METRICS.get(name)
    values = metric.fn(*arrays)
    if metric.unit == "perturbation":
        v = values.reindex(uniq).to_numpy(dtype=np.float64)
        c = counts
    else:
        v = values.to_numpy(dtype=np.float64)
        rng = np.random.default_rng(seed + 1)
        c = np.stack(
            [np.bincount(rng.integers(0, len(v), len(v)), minlength=len(v)) for _ in range(n_bootstrap)]
        )
        c = c.astype(np.float64) if len(v) else np.zeros((n_bootstrap, 0))
    ok = np.isfinite(v)
    c = c[:, ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((c @ v[ok]) / c.sum(axis=1))


@keyword_options
def evaluate(
    labels: np.ndarray,
    scores: np.ndarray,
    genes: np.ndarray,
    perturbations: np.ndarray,
    *,
    threshold: float = 0.5,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    n_bootstrap: int = 0,
    seed: int = 0,
    max_cells: int = 4_000_000,
    prior: np.ndarray | None = None,
    effect: np.ndarray | None = None,
    ranking_metrics: tuple[str, ...] = DEFAULT_RANKING_METRICS,
) -> pd.DataFrame:
    """Compute metrics, optionally with percentile bootstrap 95% CIs over perturbations.

    The bootstrap resamples perturbations with replacement; every resample is a row of perturbation
    weights and the metrics of :data:`WEIGHTED_METRICS` are computed for a block of resamples at once
    (``max_cells`` bounds the size of a block's ``resamples × rows`` weight matrix). With ``prior`` (each
    row's gene prior) and ``effect`` (each row's effect score), the :data:`RANKING_METRICS` named in
    ``ranking_metrics`` are computed too.

    Returns:
        Frame with columns metric, value, ci_low, ci_high (CIs NaN where not bootstrapped). Without rows,
        every score is NaN; counts (metrics without a ``best`` value) are computed.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(genes).astype(str)
    p = np.asarray(perturbations).astype(str)
    # no scored row (an LLM method that failed on every query): a score is empty, never 0.0 (an ECE of 0
    # would read as perfect calibration); counts stay counts
    rows = [
        {
            "metric": m,
            "value": np.nan
            if not len(y) and METRICS.info(m).best is not None
            else METRICS.get(m)(y, s, g, p, threshold),
        }
        for m in metrics
    ]
    ranked: tuple[np.ndarray, ...] | None = None
    if prior is not None and effect is not None:
        ranked = (y, s, g, p, np.asarray(prior, dtype=np.float64), np.asarray(effect, dtype=np.float64))
        rows += [{"metric": m, "value": ranking_metric(m, *ranked)} for m in ranking_metrics]
    out = pd.DataFrame(rows)
    out["ci_low"] = np.nan
    out["ci_high"] = np.nan
    if n_bootstrap > 0 and len(y):
        counts, codes = bootstrap_draws(p, n_bootstrap, seed)
        boot = [m for m in metrics if m in BOOTSTRAP_METRICS]
        vals: dict[str, list[np.ndarray]] = {m: [] for m in boot}
        yf = y.astype(np.float64)
        step = max(1, max_cells // max(len(y), 1))
        for start in range(0, n_bootstrap, step):
            w = counts[start : start + step][:, codes]
            for m in boot:
                if m in WEIGHTED_METRICS:
                    vals[m].append(WEIGHTED_METRICS.get(m)(yf, s, g, p, threshold, w))
                else:  # a metric without a weighted form: recompute it on each resample
                    members = pd.Series(np.arange(len(p))).groupby(codes).indices
                    res = []
                    for c in counts[start : start + step]:
                        idx = np.concatenate([np.repeat(members[k], int(n)) for k, n in enumerate(c) if n])
                        res.append(METRICS.get(m)(y[idx], s[idx], g[idx], p[idx], threshold))
                    vals[m].append(np.asarray(res))
        if ranked is not None:
            uniq = np.unique(p)
            for m in ranking_metrics:
                vals[m] = [_bootstrap_ranking(m, ranked, counts, uniq, n_bootstrap, seed)]
        for m, parts in vals.items():
            arr = np.concatenate(parts)
            arr = arr[~np.isnan(arr)]
            if len(arr):
                out.loc[out["metric"] == m, ["ci_low", "ci_high"]] = np.percentile(arr, [2.5, 97.5])
    return out


def metric_info(name: str) -> MetricInfo:
    """The :class:`MetricInfo` of any registered metric (plain, ranking or call metric).

    Raises:
        UnknownNameError: No registry holds ``name``.
    """
    for reg in (METRICS, RANKING_METRICS):
        if name in reg:
            info = reg.info(name)
            assert isinstance(info, MetricInfo), name
            return info
    return CALL_METRICS.get(name)


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
