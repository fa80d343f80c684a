"""Score predictions with cell-eval, the community's evaluator (``pip install 'coreperturb[celleval]'``).

cell-eval compares a predicted and a real differential-expression table per perturbation, in pdex's
columns ``target, feature, log2_fold_change, p_value, fdr``. PerturbQA-style labels and CORE's
probabilities are written into those columns as follows, so that cell-eval's own metrics read what a
user reads:

- **real**: ``fdr = p_value = 0`` for a DE pair (label 1) and 1 otherwise; ``log2_fold_change`` = +1 / −1
  from the direction labels of the pair (+1 where none is known), 0 for non-DE pairs. The labels are
  binary, so the real ranking by ``|log2_fold_change|`` is a tie among all DE genes: rows are shuffled with
  a fixed seed so that ``overlap_at_K`` with fewer slots than DE genes takes a random subset, not file order.
- **predicted**: a gene is significant (``fdr < 0.05``) exactly when ``p_de`` reaches the method's decision
  threshold (chosen on training data), so cell-eval's DE calls are the model's calls. Within each tier
  the ranking score ``r`` orders genes: ``fdr = 0.05·(1 − r)`` for calls and ``0.05 + 0.95·(1 − r)``
  otherwise, and ``|log2_fold_change| = r``, with ``r = p_de`` for the ``p_de`` ranking and
  ``r = sigmoid(effect)`` for the ``effect`` ranking (a monotone map of the effect score into (0, 1)). The
  sign of ``log2_fold_change`` is that of ``p_up − 0.5`` where a direction model exists (+1 otherwise).

So ``precision_at_K`` / ``overlap_at_K`` score the top-K predicted DE genes ranked by ``r``;
``pr_auc`` / ``roc_auc`` rank every gene of a perturbation by ``−log10(fdr)`` (calls first, then ``r``);
``de_direction_match`` is the share of real DE genes whose predicted sign is right.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from coreperturb.errors import CorePerturbError

INSTALL_HINT = "cell-eval is not installed: pip install 'coreperturb[celleval]'"
CELL_EVAL_METRICS: dict[str, tuple[str, dict[str, Any]]] = {
    "precision_at_10": ("precision_at_50", {"k": 10}),
    "precision_at_50": ("precision_at_50", {}),
    "overlap_at_10": ("overlap_at_50", {"k": 10}),
    "overlap_at_50": ("overlap_at_50", {}),
    "overlap_at_N": ("overlap_at_N", {}),
    "de_direction_match": ("de_direction_match", {}),
    "pr_auc": ("pr_auc", {}),
    "roc_auc": ("roc_auc", {}),
}
"""Our name → (cell-eval registry name, keyword overrides): cell-eval's own DE metric functions, with ``k``
set where cell-eval registers no K of 10."""
RANKINGS: tuple[str, ...] = ("p_de", "effect")


def _cell_eval() -> Any:
    try:
        import cell_eval.metrics as cem
        from cell_eval._types import initialize_de_comparison
    except ImportError:
        raise CorePerturbError(INSTALL_HINT) from None
    return cem, initialize_de_comparison


def de_tables(
    predictions: pd.DataFrame,
    threshold: float,
    ranking: str = "effect",
    direction: pd.DataFrame | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The real and predicted DE tables of one (cell line, method) in pdex's columns.

    Args:
        predictions: DE rows of one cell line and method with ``perturbation, gene, score, label`` and
            (for the effect ranking) ``effect``.
        threshold: The method's decision threshold on ``score``.
        ranking: ``p_de`` or ``effect``: what orders the genes (see the module docstring).
        direction: Optional rows of the direction task for the same line and method
            (``perturbation, gene, score`` = P(up), ``label`` = up).
        seed: Shuffles the real table (ties among DE genes).

    Returns:
        ``(real, pred)`` with columns ``target, feature, log2_fold_change, p_value, fdr``.
    """
    if ranking not in RANKINGS:
        raise CorePerturbError(f"unknown ranking {ranking!r}; choose from {', '.join(RANKINGS)}")
    d = predictions.loc[np.isfinite(predictions["score"].to_numpy(dtype=np.float64))].reset_index(drop=True)
    key = ["perturbation", "gene"]
    up_label = pd.Series(np.nan, index=d.index)
    p_up = pd.Series(np.nan, index=d.index)
    if direction is not None and len(direction):
        dd = direction.drop_duplicates(key).set_index(key)
        idx = pd.MultiIndex.from_frame(d[key])
        up_label = pd.Series(dd["label"].reindex(idx).to_numpy(dtype=np.float64), index=d.index)
        p_up = pd.Series(dd["score"].reindex(idx).to_numpy(dtype=np.float64), index=d.index)
    y = d["label"].to_numpy()
    real_sign = np.where(up_label.to_numpy() == 0, -1.0, 1.0)
    real = pd.DataFrame(
        {
            "target": d["perturbation"].astype(str),
            "feature": d["gene"].astype(str),
            "log2_fold_change": np.where(y == 1, real_sign, 0.0),
            "p_value": np.where(y == 1, 0.0, 1.0),
            "fdr": np.where(y == 1, 0.0, 1.0),
        }
    )
    real = real.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    p_de = d["score"].to_numpy(dtype=np.float64)
    if ranking == "p_de":
        r = p_de
    else:
        eff = d["effect"].to_numpy(dtype=np.float64)
        r = 1.0 / (1.0 + np.exp(-np.nan_to_num(eff, nan=-np.inf)))
    r = np.clip(r, 1e-9, 1 - 1e-9)
    call = p_de >= threshold
    fdr = np.where(call, 0.05 * (1 - r), 0.05 + 0.95 * (1 - r))
    sign = np.where(p_up.to_numpy() < 0.5, -1.0, 1.0)
    pred = pd.DataFrame(
        {
            "target": d["perturbation"].astype(str),
            "feature": d["gene"].astype(str),
            "log2_fold_change": sign * r,
            "p_value": fdr,
            "fdr": fdr,
        }
    )
    return real, pred


def score_de_tables(
    real: pd.DataFrame, pred: pd.DataFrame, metrics: Sequence[str] = tuple(CELL_EVAL_METRICS)
) -> dict[str, float]:
    """cell-eval's DE metrics of one pair of tables, each the mean over perturbations (NaN-skipping), as
    cell-eval aggregates them."""
    import polars as pl

    cem, initialize = _cell_eval()
    comparison = initialize(real=pl.from_pandas(real), pred=pl.from_pandas(pred))
    out: dict[str, float] = {}
    for name in metrics:
        registered, kwargs = CELL_EVAL_METRICS[name]
        res = cem.metrics_registry.compute(registered, comparison, kwargs=kwargs or None)
        vals = np.array(list(res.values()) if isinstance(res, dict) else [res], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[name] = float(vals.mean()) if len(vals) else float("nan")
    return out


def cell_eval_scores(
    predictions: pd.DataFrame,
    thresholds: dict[tuple[str, str, str], float] | None = None,
    rankings: Sequence[str] = RANKINGS,
    metrics: Sequence[str] = tuple(CELL_EVAL_METRICS),
) -> pd.DataFrame:
    """cell-eval's DE metrics for every (cell line, method) and ranking of labelled predictions.

    Args:
        predictions: From :func:`coreperturb.stages.predict` (or a benchmark's ``predictions.parquet``),
            with ``label``; direction rows (task ``dir``) give the signs where present.
        thresholds: Decision threshold per (cell line, task, method) (default 0.5).
        rankings: ``p_de`` and / or ``effect``.
        metrics: Names of :data:`CELL_EVAL_METRICS`.

    Returns:
        Tidy frame: cell_line, method, ranking, metric, value.
    """
    _cell_eval()
    if "label" not in predictions.columns:
        raise CorePerturbError("cell-eval needs labelled predictions (a 'label' column)")
    thresholds = thresholds or {}
    de = predictions[predictions["task"].astype(str) == "de"] if "task" in predictions else predictions
    rows = []
    for (line, method), grp in de.groupby(["cell_line", "method"], sort=True, observed=True):
        direction = None
        if "task" in predictions.columns:
            dmask = (
                (predictions["task"].astype(str) == "dir")
                & (predictions["cell_line"] == line)
                & (predictions["method"] == method)
            )
            direction = predictions.loc[dmask]
        thr = thresholds.get((str(line), "de", str(method)), 0.5)
        for ranking in rankings:
            real, pred = de_tables(grp, thr, ranking, direction)
            for name, value in score_de_tables(real, pred, metrics).items():
                rows.append(
                    {"cell_line": line, "method": method, "ranking": ranking, "metric": name, "value": value}
                )
    return pd.DataFrame(rows, columns=["cell_line", "method", "ranking", "metric", "value"])


__all__ = [
    "CELL_EVAL_METRICS",
    "INSTALL_HINT",
    "RANKINGS",
    "cell_eval_scores",
    "de_tables",
    "score_de_tables",
]
