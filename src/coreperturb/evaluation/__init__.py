"""Evaluation: registered metrics and bootstrap confidence intervals, over the asked pairs and the genome."""

from coreperturb.evaluation._genome import genome_metrics
from coreperturb.evaluation._metrics import (
    DEFAULT_METRICS,
    METRICS,
    MetricInfo,
    best_f1_threshold,
    evaluate,
    metric_info,
    per_group_auroc,
    reliability_bins,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "MetricInfo",
    "best_f1_threshold",
    "evaluate",
    "genome_metrics",
    "metric_info",
    "per_group_auroc",
    "reliability_bins",
]
