"""Evaluation: registered metrics and bootstrap confidence intervals."""

from coreperturb.evaluation.metrics import (
    DEFAULT_METRICS,
    METRICS,
    best_f1_threshold,
    evaluate,
    per_group_auroc,
    reliability_bins,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "best_f1_threshold",
    "evaluate",
    "per_group_auroc",
    "reliability_bins",
]
