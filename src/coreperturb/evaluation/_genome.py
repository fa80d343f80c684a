"""Metrics over the genome: what labelled predictions say of every readout gene, not of the asked pairs.

A labelled table asks each perturbation about a sample of its genes (:mod:`coreperturb.data._design`). Each
asked row stands for ``w`` genome pairs: a DE row for 1 and an asked not-DE row for ``(U - n_de) / n_not_de``
under a case-control design (``U`` readout genes), every row for ``U / n_asked`` under a uniform one, and 1
where the table is complete (``s_p`` and whether a list is whole come from
:func:`coreperturb.data._design.perturbation_design`, as the calls' weights do). Sums weighted so estimate
genome sums (inverse-probability weighting, Horvitz & Thompson 1952). Perturbations whose lists may have been cut are left out: their DE count is unknown. Where
every readout gene's prior is given, an asked not-DE row stands for ``1 / r_g`` times more: its gene's asking rate
relative to the mean gene, measured on the table's own whole-list perturbations
(:func:`coreperturb.data._design.asking_factors`; PerturbQA asks frequent responders less often).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coreperturb.data._design import SamplingDesign, asking_factors, perturbation_design, row_weights
from coreperturb.evaluation._calls import CALL_METRICS
from coreperturb.evaluation._info import MetricInfo

_NO_WHOLE = "no test perturbation with a whole DE list, or no design recorded (a model of an earlier release)"
for _name, _info in {
    "genome_de_ratio": MetricInfo(
        "Σ P(DE) / DE, genome",
        "mean P(DE) over the readout genes / the DE rate, whole-list test perturbations (1 = means what it says)",
        1.0,
        de_only=True,
        why_missing=_NO_WHOLE,
    ),
    "genome_prior_ratio": MetricInfo("Σ prior / DE, genome", "the same for p_prior", 1.0, de_only=True),
    "genome_observed_de": MetricInfo(
        "DE genes", "median DE genes of a whole-list test perturbation", de_only=True
    ),
    "genome_expected_de": MetricInfo(
        "Σ P(DE), genome",
        "median Σ P(DE) over the readout genes of a whole-list test perturbation",
        de_only=True,
    ),
    "genome_de_call_precision": MetricInfo(
        "DE-call precision, genome",
        "share of DE calls that are DE over the genome (NaN: no DE call)",
        1.0,
        de_only=True,
    ),
    "de_call_precision": MetricInfo(
        "DE-call precision", "share of DE calls that are DE among the asked pairs", 1.0, de_only=True
    ),
    "genome_de_calls": MetricInfo(
        "DE calls, genome", "DE calls per perturbation over the genome", de_only=True
    ),
    "genome_coverage": MetricInfo(
        "coverage, genome",
        "share of genome pairs whose call holds the truth",
        de_only=True,
        why_missing=_NO_WHOLE,
    ),
    "genome_n_whole_perturbations": MetricInfo(
        "whole-list perturbations", "test perturbations whose DE list is whole", de_only=True
    ),
}.items():
    CALL_METRICS.register(_name)(_info)


def genome_weights(
    labels: np.ndarray,
    perturbations: np.ndarray,
    design: SamplingDesign,
    universe: int,
    *,
    genes: np.ndarray | None = None,
    gene_priors: pd.Series | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, whole)`` per row: the genome pairs a row stands for, and whether its perturbation's list
    is whole (rows of other perturbations get weight 0). With each row's gene (``genes``) and every readout
    gene's prior (``gene_priors``, indexed by gene), a case-control table's not-DE rows also carry their gene's
    asking factor (module docstring)."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(perturbations).astype(str)
    g = np.asarray(genes).astype(str) if genes is not None else np.full(len(p), "")
    rows = pd.DataFrame({"perturbation": p, "gene": g, "label": y})
    per = perturbation_design(rows, universe, design)  # the one home of s_p and of whole lists
    at = per.index.get_indexer(pd.Index(p))
    whole = per["whole"].to_numpy(dtype=bool)[at]
    if design.kind == "uniform":
        n = (per["n_de"] + per["n_not_de"]).to_numpy(dtype=np.float64)
        return np.where(whole, (universe / np.maximum(n, 1))[at], 0.0), whole
    factor = None
    if design.corrects and genes is not None and gene_priors is not None:
        held = per.index[per["whole"].to_numpy(dtype=bool)]
        factor = asking_factors(rows, gene_priors, held).reindex(g).to_numpy()
    return row_weights(p, y, per, gene_factor=factor), whole


def genome_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    perturbations: np.ndarray,
    *,
    design: SamplingDesign,
    universe: int,
    calls: np.ndarray | None = None,
    positive: str = "DE",
    prior: np.ndarray | None = None,
    genes: np.ndarray | None = None,
    gene_priors: pd.Series | None = None,
) -> dict[str, float]:
    """Expected against observed DE genes per perturbation, and the calls' precision and coverage, over the
    genome (``scores``, ``prior``: genome-scale P(DE) and gene priors; ``calls``: the conformal calls;
    ``genes`` with ``gene_priors``, every readout gene's prior: not-DE rows weighted by their gene's asking
    factor, :func:`genome_weights`).

    Returns:
        ``genome_n_whole_perturbations``; ``genome_observed_de`` / ``genome_expected_de`` (median over those
        perturbations of their DE genes and of Σ P(DE) over the readout genes); ``genome_de_ratio`` (mean
        P(DE) over the genome / the DE rate); ``genome_prior_ratio`` (the same for the priors); with calls,
        ``genome_de_call_precision`` (share of ``DE`` calls that are DE), ``genome_de_calls`` (``DE`` calls per
        perturbation), ``genome_coverage`` (share of pairs whose call holds the truth; ``uncertain`` holds
        both) and ``de_call_precision`` (the same precision among the asked pairs).
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(perturbations).astype(str)
    w, whole = genome_weights(y, p, design, universe, genes=genes, gene_priors=gene_priors)
    ok = whole & np.isfinite(s)
    out: dict[str, float] = {"genome_n_whole_perturbations": float(len(np.unique(p[whole])))}
    if not ok.any():
        return out
    # a DE row stands for one genome DE pair under case-control and complete designs, for U / n under a
    # uniform one: the weighted sum of the labels estimates a perturbation's DE genes in every design
    frame = pd.DataFrame({"p": p[ok], "wy": w[ok] * y[ok], "ws": w[ok] * s[ok]})
    per = frame.groupby("p", sort=False).agg(observed=("wy", "sum"), expected=("ws", "sum"))
    out["genome_observed_de"] = float(per["observed"].median())
    out["genome_expected_de"] = float(per["expected"].median())
    total = float(per["observed"].sum())
    out["genome_de_ratio"] = float(per["expected"].sum() / total) if total > 0 else float("nan")
    if prior is not None:
        pr = np.asarray(prior, dtype=np.float64)
        fin = ok & np.isfinite(pr)
        out["genome_prior_ratio"] = float((w[fin] * pr[fin]).sum() / total) if total > 0 else float("nan")
    if calls is not None:
        c = np.asarray(calls).astype(str)
        called = ok & (c != "")
        if called.any():
            is_pos = c == positive
            covered = (c == "uncertain") | (is_pos == (y == 1))
            wc = w[called]
            out["genome_coverage"] = float((wc * covered[called]).sum() / wc.sum())
            pos = called & is_pos
            out["genome_de_calls"] = float(w[pos].sum() / max(len(per), 1))
            out["genome_de_call_precision"] = (
                float((w[pos] * (y[pos] == 1)).sum() / w[pos].sum()) if pos.any() else float("nan")
            )
            out["de_call_precision"] = float((y[pos] == 1).mean()) if pos.any() else float("nan")
    return out


__all__ = ["genome_metrics", "genome_weights"]
