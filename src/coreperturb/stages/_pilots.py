"""Which perturbations to screen first in a new cell line, from what the other lines' screens and the KG say.

A pilot's rows help the new line's model twice: as its own screen's evidence (an observed outcome of a
perturbation KG-related to the one asked about) and as the labels its combiner learns how this line differs
from the others on. :func:`propose_pilot` therefore picks greedily, each time the candidate that adds most
*expected evidence*: its strength in the other lines (its mean DE rate there: a perturbation that moves many
genes gives positive evidence on many genes, one that moves none gives little) times the KG similarity it
brings to the candidates not yet near a chosen one (a facility-location objective: a pilot of ten
near-identical perturbations covers one neighbourhood). Nothing of the new line is read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from coreperturb.errors import CorePerturbError
from coreperturb.evidence._similarity import relational_similarity
from coreperturb.stages._fitted import FittedModels
from coreperturb.stages._flags import kg_coverage

PILOT_COLUMNS: tuple[str, ...] = (
    "rank",
    "perturbation",
    "lines_screened",
    "de_rate_elsewhere",
    "kg_coverage",
    "gain",
)
"""Columns of a proposed pilot: its order, each perturbation's screens and DE rate in the model's lines,
the share of KG relations that know it and the expected evidence it added when chosen."""

NEIGHBOURS = 50
"""KG neighbours kept per candidate (the evidence retrieval's own scale)."""


def strength(models: FittedModels, perturbations: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per perturbation: its mean DE rate over the model's lines that screened it (NaN where none did) and the
    number of those lines."""
    rows = models.train.loc[models.train["task"] == "de"]
    per_line = rows.groupby(["perturbation", "cell_line"], observed=True)["label"].mean()
    mean = per_line.groupby(level=0).mean()
    count = per_line.groupby(level=0).size()
    idx = pd.Index(list(perturbations))
    return mean.reindex(idx).to_numpy(dtype=np.float64), count.reindex(idx).fillna(0).to_numpy(dtype=np.int64)


def propose_pilot(
    models: FittedModels,
    *,
    n: int,
    candidates: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> pd.DataFrame:
    """The ``n`` perturbations to screen first in a new line, best first (:data:`PILOT_COLUMNS`).

    Args:
        models: A fitted model of the other lines' screens.
        n: Pilot size.
        candidates: Perturbations that could be screened (default: every perturbation screened in one of the
            model's lines).
        exclude: Perturbations already screened in the new line.

    Raises:
        CorePerturbError: ``n`` < 1, or fewer candidates than ``n``.
    """
    if n < 1:
        raise CorePerturbError("a pilot needs n >= 1 perturbations")
    if candidates is None:
        candidates = sorted(
            map(str, pd.unique(models.train.loc[models.train["task"] == "de", "perturbation"]))
        )
    skip = set(exclude)
    cands = [c for c in dict.fromkeys(map(str, candidates)) if c not in skip]
    if len(cands) < n:
        raise CorePerturbError(f"{len(cands)} candidate perturbations for a pilot of {n}")
    rate, lines = strength(models, cands)
    overall = float(np.nanmean(rate)) if np.isfinite(rate).any() else 0.0
    # a perturbation no line screened: its strength is unknown; count it as a weak one (half the mean)
    weight = np.where(np.isfinite(rate), rate, overall / 2)
    sim = relational_similarity(models.kg, cands, cands, top_k=NEIGHBOURS).combined.astype(np.float64)
    np.fill_diagonal(sim, 1.0)  # a pilot covers itself
    covered = np.zeros(len(cands))
    chosen: list[int] = []
    gains: list[float] = []
    free = np.ones(len(cands), dtype=bool)
    for _ in range(n):
        gain = weight * ((1.0 - covered) @ sim)
        gain[~free] = -np.inf
        best = int(np.argmax(gain))
        chosen.append(best)
        gains.append(float(gain[best]))
        free[best] = False
        covered = np.minimum(1.0, covered + sim[:, best])
    pick = [cands[i] for i in chosen]
    return pd.DataFrame(
        {
            "rank": np.arange(1, n + 1),
            "perturbation": pick,
            "lines_screened": lines[chosen],
            "de_rate_elsewhere": rate[chosen],
            "kg_coverage": kg_coverage(models.kg, pick),
            "gain": gains,
        }
    )


__all__ = ["PILOT_COLUMNS", "propose_pilot", "strength"]
