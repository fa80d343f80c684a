"""Vectorised evidence features for every query: per-relation contrastive votes and their context.

All features are sparse/dense matrix algebra over ``queries × pool`` similarities and the pool's
``perturbations × genes`` outcomes; nothing loops over queries in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from coreperturb._util import logit as _logit
from coreperturb._util import positions
from coreperturb.evidence.contrastive import build_evidence, gather_rows
from coreperturb.evidence.pool import ObservationPool
from coreperturb.evidence.similarity import SimilarityBundle, keep_top_k
from coreperturb.graph.kg import KnowledgeGraph


@dataclass(frozen=True)
class FeatureParams:
    """Knobs of the evidence features.

    Attributes:
        prior_strength: Pseudo-count of the gene's base rate in every vote (shrinks thin evidence to the prior).
        module_k: Co-responding genes kept per gene for the gene-module smoothed vote.
        module_self: Weight of the gene itself in the module smoothing.
    """

    prior_strength: float = 1.0
    module_k: int = 30
    module_self: float = 2.0


def _at(dense_q_by_g: np.ndarray, qi: np.ndarray, gi: np.ndarray, fill: float = 0.0) -> np.ndarray:
    ok = gi >= 0
    out = np.full(len(qi), fill, dtype=np.float64)
    out[ok] = dense_q_by_g[qi[ok], gi[ok]]
    return out


def _sim_times(s: np.ndarray, m: sp.csr_matrix) -> np.ndarray:
    """Dense ``s @ m`` for dense ``s`` (queries × pool) and sparse ``m`` (pool × genes)."""
    return np.asarray((sp.csr_matrix(m.T) @ s.T).T)


def co_response(pool: ObservationPool, k: int, self_weight: float) -> sp.csr_matrix:
    """Gene × gene smoothing matrix: cosine of co-positive counts, top-``k`` per gene, plus ``self_weight``·I."""
    co = sp.csr_matrix(pool.Y.T @ pool.Y).astype(np.float32)
    d = np.sqrt(co.diagonal()) + 1e-9
    co = sp.csr_matrix(sp.diags(1 / d) @ co @ sp.diags(1 / d))
    co.setdiag(0)
    co.eliminate_zeros()
    co = _top_k_sparse(co, k)
    return sp.csr_matrix(co + self_weight * sp.identity(co.shape[0], format="csr"))


def shrunk_vote(
    s: np.ndarray, pool: ObservationPool, qi: np.ndarray, gi: np.ndarray, b: np.ndarray, a: float
) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-weighted vote of the pool's outcomes on each query's gene, shrunk toward its base rate.

    Args:
        s: ``queries × pool`` similarities (rows = query perturbations).
        pool: Observed outcomes.
        qi: Row of ``s`` of each query; gi: column of ``pool.genes`` of each query (-1 = unobserved gene).
        b: Base rate of each query's gene; a: its pseudo-count.

    Returns:
        ``(logit((pos + a·b) / (tot + a)) − logit(b), log1p(tot))``: the vote and the log evidence mass.
    """
    pos = _at(_sim_times(s, pool.Y), qi, gi)
    tot = _at(_sim_times(s, pool.M), qi, gi)
    return _logit((pos + a * b) / (tot + a)) - _logit(b), np.log1p(tot)


def _top_k_sparse(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest stored values of each CSR row (vectorised)."""
    m = sp.csr_matrix(m)
    counts = np.diff(m.indptr)
    if counts.max(initial=0) <= k:
        return m
    rows = np.repeat(np.arange(m.shape[0]), counts)
    order = np.lexsort((-m.data, rows))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order)) - np.repeat(m.indptr[:-1], counts)[order]
    keep = rank < k
    return sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)


def evidence_features(
    queries: pd.DataFrame,
    pool: ObservationPool,
    sims: SimilarityBundle,
    kg: KnowledgeGraph,
    params: FeatureParams | None = None,
    counts: bool = False,
) -> pd.DataFrame:
    """Features of every query (p, g) computed from its contrastive evidence.

    With ``counts=True`` two more columns, ``n_pos_evidence`` and ``n_neg_evidence`` (how many related
    perturbations made g positive / left it negative), come last; they are for display, not for models.

    Columns: ``base`` (logit gene base rate in the pool), ``log_obs``; for every relation ``r`` and for ``combined``:
    ``vote_r`` (logit of the positive share of related evidence shrunk toward the gene's base rate, minus
    ``base``), ``mass_r``
    (log evidence mass) and ``strength_r`` (related perturbations' overall positive rate); contrastive
    extremes ``max_pos``, ``max_neg``; ``module_vote`` (the vote pooled over genes that co-respond with g in
    training); direct p–g links ``pg_<relation>``; ``p_readout`` / ``p_is_readout`` (how p's own gene
    behaves as a readout) and ``co_response`` (whether p's and g's genes respond together in training).

    Every feature is computed from the pool alone, so cross-fitted training features (pool = the other
    folds) are made exactly as test features are (pool = all training perturbations). Mixing in gene rates
    computed on all training data would leak: a model could read a fold's own labels from the difference
    between the full-data and the pool gene rate.
    """
    params = params or FeatureParams()
    qi = positions(sims.queries, queries["perturbation"].astype(str))
    gi = positions(pool.genes, queries["gene"].astype(str))
    rate = pool.gene_rate()
    b = pool.rate_of(queries["gene"].astype(str))
    base = _logit(b)
    feats: dict[str, np.ndarray] = {
        "base": base,
        "log_obs": np.log1p(np.where(gi >= 0, pool.gene_obs[np.maximum(gi, 0)], 0)),
    }
    a = params.prior_strength
    prate = pool.perturbation_rate
    sets = dict(sims.by_relation)
    sets["combined"] = sims.combined
    for r, s in sets.items():
        feats[f"vote_{r}"], feats[f"mass_{r}"] = shrunk_vote(s, pool, qi, gi, b, a)
        denom = s.sum(axis=1)
        strength = np.where(denom > 0, (s @ prate) / np.maximum(denom, 1e-12), pool.global_rate)
        feats[f"strength_{r}"] = _logit(strength[qi])
    ev = build_evidence(queries, pool, sims)
    summ = ev.summary()
    feats["max_pos"] = summ["max_pos"].to_numpy()
    feats["max_neg"] = summ["max_neg"].to_numpy()
    # gene-module smoothing: evidence on genes that co-respond with g
    smooth = co_response(pool, params.module_k, params.module_self)
    comb = sims.combined
    sy = _sim_times(comb, pool.Y) @ smooth.T
    sm = _sim_times(comb, pool.M) @ smooth.T
    gy = np.asarray(pool.Y.sum(axis=0)).ravel() @ smooth.T + 1e-7
    gm = np.asarray(pool.M.sum(axis=0)).ravel() @ smooth.T + 1e-6
    grate = np.where(gi >= 0, (gy / gm)[np.maximum(gi, 0)], pool.global_rate)
    feats["module_vote"] = _logit(
        (_at(np.asarray(sy), qi, gi) + a * grate) / (_at(np.asarray(sm), qi, gi) + a)
    )
    feats["module_vote"] -= _logit(grate)
    feats["module_mass"] = np.log1p(_at(np.asarray(sm), qi, gi))
    # direct links between the perturbation's targets and the readout gene
    qperts = list(sims.queries)
    for r in ("network", "go_bp"):
        if r in kg.relations:
            ep = kg.embed(qperts, r)
            eg = kg.embed(list(pool.genes), r)
            feats[f"pg_{r}"] = np.asarray(
                gather_rows(ep, qi).multiply(gather_rows(eg, gi)).sum(axis=1)
            ).ravel()
    # the perturbed gene as a readout in training
    pidx = positions(pool.genes, qperts)
    has = pidx >= 0
    feats["p_is_readout"] = has[qi].astype(np.float64)
    feats["p_readout"] = np.where(
        has, _logit(rate[np.maximum(pidx, 0)]) - _logit(np.array([pool.global_rate]))[0], 0.0
    )[qi]
    centred = sp.csr_matrix(pool.Y.T - pool.M.T.multiply(prate[None, :]))
    z = normalize(centred, axis=1)
    zp = gather_rows(z, pidx)
    feats["co_response"] = np.asarray(gather_rows(zp, qi).multiply(gather_rows(z, gi)).sum(axis=1)).ravel()
    if counts:
        feats["n_pos_evidence"] = summ["n_pos_evidence"].to_numpy()
        feats["n_neg_evidence"] = summ["n_neg_evidence"].to_numpy()
    return pd.DataFrame(feats)


__all__ = ["FeatureParams", "co_response", "evidence_features", "keep_top_k", "shrunk_vote"]
