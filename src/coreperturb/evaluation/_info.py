"""What a metric is: the entry every metric registry carries."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is, kept in its registry entry (after cell-eval's ``MetricInfo``): the CLI summary,
    the reports and :func:`evaluate` read it instead of lists of their own.

    Attributes:
        label: Short column label in reports.
        description: What it measures, in one line.
        best: The value of a perfect predictor (``None``: a count or rate, not a score).
        bootstrap: :func:`evaluate` gives it a bootstrap CI.
        default: :func:`evaluate` computes it unless told which metrics to compute.
        de_only: Meaningful for the DE task only (a ranking of responders).
        why_missing: Why it can be NaN on a small test split.
    """

    label: str
    description: str
    best: float | None = None
    bootstrap: bool = False
    default: bool = True
    de_only: bool = False
    why_missing: str = "not computable on these test rows"


__all__ = ["MetricInfo"]
