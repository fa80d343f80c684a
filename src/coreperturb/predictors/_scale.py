"""Genome scale: from P(DE) among a table's asked pairs to P(DE) over every readout gene.

A model fitted on a case-control table (every DE gene listed, a sample of the others asked) learns the odds
of the sample, ``1 / s`` times the genome's. The correction is a Platt map fitted on training perturbations
the scoring model never saw::

    logit P_genome = a + b * logit P_sample

``fit`` fits it on the calibration grid: up to 100 whole-list calibration perturbations per line asked about
every readout gene, each pair counted once (:mod:`coreperturb.stages._calibration_grid`). Models of earlier
releases, which kept no grid, fit it at load on the conformal calibration rows, each asked not-DE row weighted
by ``1 / s_p`` (how many genome pairs it stands for) and each DE row by 1 (inverse-probability weighting; the
prior correction of King & Zeng 2001 is the special case ``b = 1``, ``a = log s``). Only perturbations whose
DE list is whole count: where a list was cut, the perturbation's DE count over the genome is unknown. The map
is strictly increasing (``b > 0``), so every ranking within a gene or a perturbation, and so every per-gene
AUROC, is the same on both scales.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coreperturb._util import logit

MIN_SCALE_PERTURBATIONS = 10
"""Whole-list calibration perturbations needed to fit the map; fewer: the prior correction alone (``b = 1``,
``a = log`` of the median not-DE share)."""


@dataclass(frozen=True)
class ScaleMap:
    """``logit P_genome = a + b * logit P_sample`` (``b > 0``).

    Attributes:
        a: Intercept.
        b: Slope.
        rows: Calibration rows it was fitted on (0: the prior correction alone).
    """

    a: float
    b: float
    rows: int = 0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """Genome-scale probabilities of sample-scale ones (NaN stays NaN; 0 and 1 stay)."""
        p = np.asarray(p, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = self.a + self.b * logit(p, eps=1e-15)  # no ties where the sample scale has none
            out = 1.0 / (1.0 + np.exp(-z))
        out = np.where(p >= 1.0, 1.0, np.where(p <= 0.0, 0.0, out))
        return np.where(np.isfinite(p), out, np.nan)

    @classmethod
    def prior_shift(cls, share: float) -> ScaleMap:
        """The prior correction alone: odds times ``share``."""
        return cls(float(np.log(max(share, 1e-9))), 1.0, 0)

    @classmethod
    def fit(cls, p: np.ndarray, labels: np.ndarray, weights: np.ndarray, *, share: float) -> ScaleMap:
        """Weighted logistic regression of the labels on ``logit(p)`` (Newton's method, a small ridge on the
        slope toward 1); the prior correction with ``share`` where the rows cannot support a fit."""
        p = np.asarray(p, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64)
        ok = np.isfinite(p) & (w > 0)
        x, y, w = logit(np.clip(p[ok], 1e-6, 1 - 1e-6)), y[ok], w[ok]
        start = cls.prior_shift(share)
        if len(x) < 20 or y.min(initial=1) == y.max(initial=0) or np.ptp(x) < 1e-9:
            return start
        w = w * (len(w) / w.sum())
        theta = np.array([start.a, 1.0])
        ridge = np.array([0.0, 1e-3 * len(w)])
        for _ in range(50):
            z = theta[0] + theta[1] * x
            mu = 1.0 / (1.0 + np.exp(-z))
            r = w * (y - mu)
            grad = np.array([r.sum(), (r * x).sum()]) - ridge * (theta - np.array([0.0, 1.0]))
            h = w * mu * (1 - mu)
            hess = np.array([[h.sum(), (h * x).sum()], [(h * x).sum(), (h * x * x).sum()]]) + np.diag(ridge)
            step = np.linalg.solve(hess + 1e-9 * np.eye(2), grad)
            theta = theta + step
            if np.abs(step).max() < 1e-10:
                break
        if not np.all(np.isfinite(theta)) or theta[1] <= 0:
            return start
        return cls(float(theta[0]), float(theta[1]), len(x))

    def to_dict(self) -> dict[str, float]:
        """A JSON-able form (``model.json``'s ``sampling_design.genome_maps``)."""
        return {"a": self.a, "b": self.b, "rows": self.rows}

    @classmethod
    def from_dict(cls, raw: dict[str, float]) -> ScaleMap:
        """From :meth:`to_dict`."""
        return cls(float(raw["a"]), float(raw["b"]), int(raw.get("rows", 0)))


__all__ = ["MIN_SCALE_PERTURBATIONS", "ScaleMap"]
