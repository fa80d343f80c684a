"""Reference (per-pair) implementation of the evidence features: the test oracle and speed baseline.

:func:`coreperturb.evidence._features.evidence_features` computes the same features from per-perturbation ×
gene dense matrices; this module keeps the earlier form that gathers sparse rows for every query pair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from coreperturb._util import logit as _logit
from coreperturb._util import positions
from coreperturb.evidence._contrastive import build_evidence, gather_rows
from coreperturb.evidence._features import FeatureParams, _at, _sim_times, co_response, shrunk_vote
from coreperturb.evidence._pool import ObservationPool
from coreperturb.evidence._similarity import SimilarityBundle
from coreperturb.graph._kg import KnowledgeGraph


def evidence_features_reference(
    queries: pd.DataFrame,
    pool: ObservationPool,
    sims: SimilarityBundle,
    kg: KnowledgeGraph,
    *,
    params: FeatureParams | None = None,
    counts: bool = False,
) -> pd.DataFrame:
    """The straightforward per-pair implementation of :func:`coreperturb.evidence.evidence_features`.

    Kept as the oracle the vectorised implementation is tested against (tests/evidence/test_gene_columns.py);
    no predictor uses it.

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
        feats[f"vote_{r}"], feats[f"mass_{r}"] = shrunk_vote(s, pool, qi, gi, b=b, a=a)
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


__all__ = ["evidence_features_reference"]
