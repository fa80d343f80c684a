"""The few-genes path of the features (one gene x every candidate) against the whole grid and the oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coreperturb._util import positions
from coreperturb.data import QueryTable
from coreperturb.evidence import relational_similarity
from coreperturb.evidence._context import ContextEvidence
from coreperturb.evidence._features import PreparedPool, evidence_features, features_at, gene_columns
from coreperturb.evidence._pool import ObservationPool
from coreperturb.evidence._reference import evidence_features_reference
from coreperturb.graph import KnowledgeGraph


def _grid(table: QueryTable, kg: KnowledgeGraph) -> tuple[ObservationPool, list[str], PreparedPool]:
    train = table.subset("synth_a", "de").split("train")
    pool = ObservationPool.from_frame(train)
    perts = sorted(table.subset("synth_a", "de").split("test")["perturbation"].unique())
    return pool, perts, PreparedPool.build(pool, kg)


def test_few_genes_equal_the_whole_grid_bit_for_bit(
    synth_table: QueryTable, synth_kg: KnowledgeGraph
) -> None:
    pool, perts, prepared = _grid(synth_table, synth_kg)
    sims = relational_similarity(synth_kg, perts, list(pool.perturbations), top_k=20)
    n_p, n_g = len(perts), len(pool.genes)
    qi = np.repeat(np.arange(n_p), n_g)
    gi = np.tile(np.arange(n_g), n_p)
    whole = features_at(qi, gi, pool, sims, synth_kg, counts=True, prepared=prepared, as_dict=True)
    assert isinstance(whole, dict)
    picked = np.array([3, n_g // 2])
    assert gene_columns(np.tile(picked, n_p), n_g, prepared.smooth) is not None  # the restricted path runs
    few = features_at(
        np.repeat(np.arange(n_p), 2), np.tile(picked, n_p), pool, sims, synth_kg, counts=True,
        prepared=prepared, as_dict=True,
    )  # fmt: skip
    assert isinstance(few, dict)
    rows = (np.arange(n_p)[:, None] * n_g + picked[None, :]).ravel()
    assert list(few) == list(whole)
    for name, values in few.items():
        assert np.array_equal(values, whole[name][rows]), name


def test_many_genes_take_the_whole_grid_path() -> None:
    assert gene_columns(np.arange(100), 120) is None
    assert gene_columns(np.array([-1, 5, 5]), 120) is not None
    assert gene_columns(np.array([-1, -1]), 120) is None  # no gene the pool observed: nothing to restrict


def test_vectorised_features_match_the_per_pair_oracle(
    synth_table: QueryTable, synth_kg: KnowledgeGraph
) -> None:
    sub = synth_table.subset("synth_a", "de")
    test = sub.split("test").reset_index(drop=True)
    pool, perts, _ = _grid(synth_table, synth_kg)
    sims = relational_similarity(synth_kg, perts, list(pool.perturbations), top_k=20)
    fast = evidence_features(test, pool, sims, synth_kg, counts=True)
    slow = evidence_features_reference(test, pool, sims, synth_kg, counts=True)
    common = [c for c in slow.columns if c in fast.columns]
    assert len(common) >= 10
    np.testing.assert_allclose(
        fast[common].to_numpy(float), slow[common].to_numpy(float), rtol=1e-6, atol=1e-9
    )


def test_context_votes_for_one_gene_equal_the_whole_grid(synth_table: QueryTable) -> None:
    rows = synth_table.frame
    target = rows[(rows["cell_line"] == "synth_a") & (rows["task"] == "de") & (rows["split"] == "train")]
    context = rows[(rows["cell_line"] != "synth_a") & (rows["task"] == "de") & (rows["split"] == "train")]
    ctx = ContextEvidence.from_frame(context)
    pool = ObservationPool.from_frame(target)
    perts = sorted(context["perturbation"].unique())[:12]
    genes = list(pool.genes)
    grid = pd.DataFrame({"perturbation": np.repeat(perts, len(genes)), "gene": np.tile(genes, len(perts))})
    one = grid[grid["gene"] == genes[1]].reset_index(drop=True)
    whole = ctx.features(grid, pool)
    few = ctx.features(one, pool)
    at = positions(pd.Index(genes), one["gene"]) + np.arange(len(perts)) * len(genes)
    for c in few.columns:
        assert np.array_equal(few[c].to_numpy(), whole[c].to_numpy()[at]), c
