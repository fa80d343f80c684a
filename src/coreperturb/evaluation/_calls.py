"""Metrics of the conformal calls: coverage and abstention, with their registry entries."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coreperturb._registry import Registry
from coreperturb.evaluation._info import MetricInfo

CALL_METRICS: Registry[MetricInfo] = Registry("call metric")
"""Metrics of conformal calls (:func:`call_metrics`); each entry is its :class:`MetricInfo`."""
_NO_CALLS = "the method has no conformal calibration (LLM methods)"
for _name, _info in {
    "coverage": MetricInfo(
        "call coverage",
        "share of rows whose call holds the true label (an uncertain call holds both)",
        why_missing=_NO_CALLS,
    ),
    "coverage_min_prior_decile": MetricInfo(
        "coverage, worst prior decile", "the lowest coverage over the deciles of the gene prior"
    ),
    "coverage_positive_rows": MetricInfo(
        "coverage, positive rows", "coverage among the truly positive (DE / up) rows"
    ),
    "uncertain_rate": MetricInfo(
        "uncertain calls", "share of rows called uncertain", 0.0, why_missing=_NO_CALLS
    ),
    "n_called": MetricInfo("rows called", "rows with a call"),
}.items():
    CALL_METRICS.register(_name)(_info)


def call_metrics(
    labels: np.ndarray,
    calls: np.ndarray,
    prior: np.ndarray,
    positive: str,
    *,
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Coverage and abstention of conformal calls (``positive``: the name of the positive call, e.g. ``DE``).

    A call holds the true label when it names it or is ``uncertain``; rows without a call (``""``) are left
    out. Coverage per prior decile uses the deciles of ``prior`` over the called rows. ``weights``: each row's
    weight in every share (the genome pairs an asked row stands for); ``n_called`` still counts rows.
    """
    c = np.asarray(calls).astype(str)
    ok = c != ""
    y = np.asarray(labels, dtype=np.int64)[ok]
    c = c[ok]
    pr = np.asarray(prior, dtype=np.float64)[ok]
    w = np.ones(len(c)) if weights is None else np.asarray(weights, dtype=np.float64)[ok]
    if not len(c):
        return {}
    unc = c == "uncertain"
    covered = unc | ((c == positive) == (y == 1))

    def share(hit: np.ndarray, m: np.ndarray | slice = slice(None)) -> float:
        return float(np.average(hit[m], weights=w[m]))

    out = {"coverage": share(covered), "uncertain_rate": share(unc), "n_called": float(len(c))}
    out["coverage_positive_rows"] = share(covered, y == 1) if (y == 1).any() else float("nan")
    fin = np.isfinite(pr)
    if fin.sum() >= 10:
        edges = np.unique(np.quantile(pr[fin], np.linspace(0, 1, 11)[1:-1]))
        b = np.searchsorted(edges, pr[fin], side="right")
        per = pd.DataFrame({"c": covered[fin] * w[fin], "w": w[fin]}).groupby(b).sum()
        out["coverage_min_prior_decile"] = float((per["c"] / per["w"]).min())
    return out


__all__ = ["CALL_METRICS", "call_metrics"]
