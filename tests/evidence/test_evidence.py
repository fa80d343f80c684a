from __future__ import annotations

import numpy as np
import pandas as pd

from coreperturb.data import QueryTable
from coreperturb.evidence import build_evidence, relational_similarity
from coreperturb.evidence._features import evidence_features
from coreperturb.evidence._pool import ObservationPool
from coreperturb.evidence._similarity import keep_top_k
from coreperturb.graph import KnowledgeGraph


def _setup(table: QueryTable, kg: KnowledgeGraph, top_k: int = 20):
    sub = table.subset("synth_a", "de")
    train, test = sub.split("train"), sub.split("test")
    pool = ObservationPool.from_frame(train)
    perts = sorted(test["perturbation"].unique())
    sims = relational_similarity(kg, perts, list(pool.perturbations), top_k=top_k)
    return train, test, pool, sims


def test_keep_top_k() -> None:
    s = np.array([[0.1, 0.5, 0.3, 0.0], [1.0, 0.2, 0.2, 0.9]], dtype=np.float32)
    out = keep_top_k(s, 2)
    assert out.tolist() == [[0.0, 0.5, 0.30000001192092896, 0.0], [1.0, 0.0, 0.0, 0.8999999761581421]]


def test_evidence_matches_per_query_loop(synth_table: QueryTable, synth_kg: KnowledgeGraph) -> None:
    train, test, pool, sims = _setup(synth_table, synth_kg)
    ev = build_evidence(test, pool, sims)
    summ = ev.summary()
    lookup = train.set_index(["perturbation", "gene"])["label"]
    rng = np.random.default_rng(0)
    for i in rng.choice(len(test), size=40, replace=False):
        p, g = test["perturbation"].iat[i], test["gene"].iat[i]
        row = sims.combined[sims.queries.get_loc(p)]
        pos, neg = [], []
        for j, q in enumerate(pool.perturbations):
            if row[j] > 0 and (q, g) in lookup.index:
                (pos if lookup[(q, g)] == 1 else neg).append(row[j])
        assert summ["n_pos_evidence"].iat[i] == len(pos)
        assert summ["n_neg_evidence"].iat[i] == len(neg)
        assert np.isclose(summ["pos_mass"].iat[i], sum(pos), atol=1e-5)
        assert np.isclose(summ["neg_mass"].iat[i], sum(neg), atol=1e-5)


def test_for_query_view_has_both_sides_and_paths(synth_table: QueryTable, synth_kg: KnowledgeGraph) -> None:
    _, test, pool, sims = _setup(synth_table, synth_kg)
    ev = build_evidence(test, pool, sims)
    summ = ev.summary()
    i = int(np.flatnonzero((summ["n_pos_evidence"] > 0) & (summ["n_neg_evidence"] > 0))[0])
    view = ev.for_query(i, kg=synth_kg, sims=sims, top=3)
    assert set(view["evidence"]) == {"positive", "negative"}
    assert {"related_perturbation", "similarity", "paths", "sim_go_bp"} <= set(view.columns)
    assert (view["similarity"] > 0).all()
    assert view["paths"].str.len().gt(0).any()


def test_features_are_finite_and_vote_carries_signal(
    synth_table: QueryTable, synth_kg: KnowledgeGraph
) -> None:
    from coreperturb.evaluation._metrics import macro_per_gene_auroc

    _, test, pool, sims = _setup(synth_table, synth_kg, top_k=50)
    f = evidence_features(test, pool, sims, synth_kg)
    assert len(f) == len(test)
    assert np.isfinite(f.to_numpy()).all()
    y, g, p = test["label"].to_numpy(), test["gene"].to_numpy(), test["perturbation"].to_numpy()
    assert macro_per_gene_auroc(y, f["vote_combined"].to_numpy(), g, p, 0.5) > 0.6
    assert macro_per_gene_auroc(y, f["base"].to_numpy(), g, p, 0.5) == 0.5


def test_unknown_gene_and_perturbation_do_not_crash(
    synth_table: QueryTable, synth_kg: KnowledgeGraph
) -> None:
    _, _, pool, _ = _setup(synth_table, synth_kg)
    q = pd.DataFrame({"perturbation": ["NOT_IN_KG", "G0001"], "gene": ["G0002", "NEW_GENE"]})
    sims = relational_similarity(synth_kg, ["NOT_IN_KG", "G0001"], list(pool.perturbations))
    f = evidence_features(q, pool, sims, synth_kg)
    assert np.isfinite(f.to_numpy()).all()
    assert f.loc[0, "vote_combined"] == 0.0  # no evidence: the vote equals the prior


def test_compiled_evidence_counts_equal_numpy(synth_table: QueryTable, synth_kg: KnowledgeGraph) -> None:
    """The numba pass over the observations gives the NumPy segment reductions' numbers exactly."""
    from coreperturb.evidence._features import evidence_matrices

    _, _, pool, sims = _setup(synth_table, synth_kg)
    rng = np.random.default_rng(0)
    for s in (sims.combined, np.where(rng.random(sims.combined.shape) < 0.5, 0, sims.combined) * 1e-40):
        fast = evidence_matrices(s, pool, numba_kernels=True)
        slow = evidence_matrices(s, pool, numba_kernels=False)
        for key in ("n_pos", "n_neg", "max_pos", "max_neg"):
            assert fast[key].dtype == slow[key].dtype and np.array_equal(fast[key], slow[key]), key
        assert fast["n_pos"].sum() + fast["n_neg"].sum() > 0 or s.max() < 1e-30
