"""Perturbation-specific effect scores: how much a prediction moves a gene away from its prior.

Ranked by ``p_de`` within a perturbation, the top genes are nearly the gene-frequency list: the genes that
respond to almost anything. The *effect* compares a prediction with the gene's prior ``p_prior``, the
gene-frequency score of the same training pool. The default (:data:`DEFAULT_EFFECT`) is the log risk
ratio of the prediction shrunk by one pseudo-observation at the prior::

    w = n / (n + 1);   effect = log(w * p_de + (1 - w) * p_prior) - log(p_prior)

where ``n`` is the number of related training perturbations observed on the gene (``n_pos_evidence +
n_neg_evidence``). A prediction that rests on no related evidence has effect 0, and one related
perturbation counts half, so thin evidence cannot turn into a large lift. ``effect > 0``: the perturbation
makes the gene more likely DE than it usually is; ``effect = log 2``: twice as likely.

The form was chosen on training perturbations only (``python benchmarks/inner_cv.py --compare effect``:
4-fold CV over the training perturbations of the four PerturbQA lines, specific-hit precision@10 of the
genes ranked within each validation perturbation). Mean over lines: ``p_de`` 0.0117, a random order
0.0264, the plain log-odds lift 0.0501, log-odds lifts shrunk by evidence 0.039–0.045, this form 0.0526,
the unshrunk risk ratio 0.0550 (it lets a lift stand on no related evidence, so it is not the default).
``gene_frequency`` has effect 0 everywhere by construction.

Directional effects use the same score for the joint events "DE and up" / "DE and down": the prediction
``p_de * p_up`` against the prior ``p_prior * up_rate(gene)``, with ``up_rate`` the gene's rate of
increases among its DE observations in the direction task's training pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coreperturb._util import logit, positions
from coreperturb.evidence._pool import ObservationPool

EFFECT_FORMS: tuple[str, ...] = ("plain", "weighted", "pseudo", "ratio")
GENE_PRIOR_STRENGTH = 1.0
"""Pseudo-count of the Beta-smoothed gene rate: the same as ``gene_frequency``'s default, so that
``p_prior`` equals the gene-frequency score."""


@dataclass(frozen=True)
class EffectParams:
    """How the effect score shrinks the log-odds lift.

    Attributes:
        form: ``plain`` (no shrinkage), ``weighted`` (lift × n / (n + kappa)), ``pseudo`` (the lift of
            ``(n·p + kappa·prior) / (n + kappa)``, i.e. kappa pseudo-observations at the prior) or ``ratio``
            (the log risk ratio ``log(p') - log(prior)`` of that shrunk ``p'``).
        kappa: Shrinkage strength in related training perturbations.
    """

    form: str = "ratio"
    kappa: float = 1.0

    def __post_init__(self) -> None:
        if self.form not in EFFECT_FORMS:
            raise ValueError(f"unknown effect form {self.form!r}; choose from {', '.join(EFFECT_FORMS)}")
        if self.kappa < 0:
            raise ValueError("effect kappa must be >= 0")


DEFAULT_EFFECT = EffectParams("ratio", 1.0)
"""Chosen by ``python benchmarks/inner_cv.py --compare effect`` (4-fold CV over TRAINING perturbations of
the four PerturbQA lines, specific-hit precision@10; the test split was not used)."""


def gene_prior(train: pd.DataFrame, genes: pd.Index | list[str] | np.ndarray) -> np.ndarray:
    """The gene-frequency score of ``genes`` over training rows (perturbation, gene, label).

    Genes never observed in ``train`` get NaN: their prior is unknown, so no effect can be stated.
    """
    pool = ObservationPool.from_frame(train)
    rate = pool.gene_rate(GENE_PRIOR_STRENGTH)
    gi = positions(pool.genes, list(map(str, genes)))
    return np.where(gi >= 0, rate[np.maximum(gi, 0)], np.nan)


def effect_score(
    p: np.ndarray, prior: np.ndarray, n_evidence: np.ndarray, params: EffectParams = DEFAULT_EFFECT
) -> np.ndarray:
    """Shrunk log-odds lift of ``p`` over ``prior`` (NaN where either is NaN)."""
    p = np.asarray(p, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    n = np.asarray(n_evidence, dtype=np.float64)
    if params.form in ("pseudo", "ratio"):
        w = n / np.maximum(n + params.kappa, 1e-12) if params.kappa > 0 else np.ones_like(n)
        shrunk = w * p + (1 - w) * prior
        if params.form == "ratio":
            eps = 1e-6
            return np.asarray(np.log(np.clip(shrunk, eps, 1)) - np.log(np.clip(prior, eps, 1)))
        return np.asarray(logit(shrunk) - logit(prior))
    lift = logit(p) - logit(prior)
    if params.form == "weighted" and params.kappa > 0:
        lift = lift * (n / (n + params.kappa))
    out = np.asarray(lift, dtype=np.float64)
    out[~(np.isfinite(p) & np.isfinite(prior))] = np.nan
    return out


__all__ = ["DEFAULT_EFFECT", "EFFECT_FORMS", "EffectParams", "effect_score", "gene_prior"]
