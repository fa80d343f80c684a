"""The benchmark's summary table: one row per (cell line, task, method), a column per key metric."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from coreperturb.evaluation._metrics import metric_info

SUMMARY_METRICS: tuple[str, ...] = (
    "macro_per_gene_auroc",
    "auroc",
    "auprc",
    "f1",
    "ece",
    "pred_pos_rate",
    "true_pos_rate",
    "excess_de_at_10",
    "per_gene_recall_at_10",
    "coverage",
    "uncertain_rate",
)
"""The columns of the benchmark summary: PerturbQA's key metric first, then pooled, calibration, the
ranking metrics of the way users read results (specificity as excess DE over the prior) and the conformal
calls' coverage and abstention, all among the benchmark's asked pairs (the table's scale)."""
GENOME_METRICS: tuple[str, ...] = (
    "genome_observed_de",
    "genome_expected_de",
    "genome_de_ratio",
    "genome_prior_ratio",
    "genome_coverage",
    "genome_de_calls",
    "genome_de_call_precision",
)
"""The columns of the second summary: what P(DE), the priors and the DE calls mean over the genome
(whole-list test perturbations, :mod:`coreperturb.evaluation._genome`)."""


def summary_table(metrics: pd.DataFrame, names: Sequence[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """Wide view: one row per (cell_line, task, method), a column per metric; plus a MEAN row per method.

    A metric that could not be computed (e.g. per-gene AUROC when no test gene has both classes) is NaN;
    :func:`missing_metrics` says why.
    """
    sub = metrics[metrics["metric"].isin(names)]
    if sub.empty:
        return pd.DataFrame(columns=list(names))
    wide = sub.pivot_table(
        index=["cell_line", "task", "method"], columns="metric", values="value", sort=False, dropna=False
    ).reindex(columns=list(names))
    wide = wide.dropna(axis=1, how="all") if wide.shape[0] else wide
    mean = wide.groupby(level=["task", "method"], sort=False).mean()
    mean.index = pd.MultiIndex.from_tuples([("MEAN", t, m) for t, m in mean.index], names=wide.index.names)
    return pd.concat([wide, mean]) if wide.index.get_level_values(0).nunique() > 1 else wide


def missing_metrics(metrics: pd.DataFrame, names: Sequence[str] = SUMMARY_METRICS) -> list[str]:
    """One line per metric of ``names`` that is NaN (or absent) for some (cell line, task, method), with
    why: a small test split, not a failure."""
    out = []
    for key, grp in metrics.groupby(["cell_line", "task", "method"], sort=False, observed=True):
        values = grp.set_index("metric")["value"]
        task = str(key[1])
        for name in names:
            info = metric_info(name)
            if info.de_only and task != "de":
                continue
            v = values.get(name, np.nan)
            if not np.isfinite(v):
                why = info.why_missing
                out.append(f"{'/'.join(map(str, key))}: {name} is missing: {why}")
    return out


__all__ = ["GENOME_METRICS", "SUMMARY_METRICS", "missing_metrics", "summary_table"]
