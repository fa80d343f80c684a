"""Contrastive evidence: for each query (p, g), the related observed perturbations split by their outcome on g.

Positive evidence for (p, g) = training perturbations p' related to p (in the KG) under which g was positive
(DE, or up-regulated for the direction task); negative evidence = related p' under which g was observed and
negative. Everything is computed for all queries at once as sparse ``queries × pool`` matrices.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coreperturb._deprecation import keyword_options
from coreperturb._util import gather_rows, positions
from coreperturb.evidence._pool import ObservationPool
from coreperturb.evidence._similarity import SimilarityBundle, relational_similarity
from coreperturb.graph._kg import KnowledgeGraph

RELATION_TITLES: dict[str, str] = {
    "go_bp": "GO process",
    "go_mf": "GO function",
    "go_cc": "GO component",
    "network": "functional network",
    "reactome": "Reactome",
    "corum": "CORUM complex",
    "string_experiments": "STRING experiments channel",
    "string_database": "STRING curated-database channel",
    "string_coexpression": "STRING co-expression channel",
    "coessentiality": "DepMap co-essentiality",
    "huri": "HuRI binary interaction",
}


def describe_link(relation: str, kind: str, feature_id: str, label: str) -> str:
    """A KG feature shared by two perturbations, in words: which STRING channel, regulon sign or structural
    similarity relates them (e.g. ``STRING experiments channel: shared partner POLR2A``, ``DoRothEA regulon:
    both activate MYC``, ``structural similarity (Tanimoto 0.62)``)."""
    if kind == "structure":
        return label
    sign = feature_id[-1:] if feature_id[-1:] in "+-" else ""
    if relation == "dorothea_targets" and sign:
        return f"DoRothEA regulon: both {'activate' if sign == '+' else 'repress'} {feature_id[:-1]}"
    if relation == "dorothea_regulators" and sign:
        return f"DoRothEA regulon: both {'activated' if sign == '+' else 'repressed'} by {feature_id[:-1]}"
    title = RELATION_TITLES.get(relation, relation)
    if kind == "network":
        return f"{title}: shared partner {feature_id}"
    return f"{title}: {label}" if label == feature_id else f"{title}: {label} ({feature_id})"


# how readily a biologist recognises a shared feature: named terms, pathways and complexes first, then a
# shared interaction partner (a gene symbol), then structure
_KIND_WEIGHT = {"annotation": 1.0, "gene_set": 1.0, "network": 0.5, "structure": 0.8}


@keyword_options
def readable_paths(
    kg: KnowledgeGraph,
    p: str,
    related: list[str],
    *,
    paths: int = 2,
    pool: int = 8,
    lead: list[str | None] | None = None,
) -> list[str]:
    """The KG links behind each related perturbation, as a biologist would want them: features that are
    specific (high weight in the cosine) AND shared by several of the listed related perturbations (a
    pathway that recurs across the evidence explains more than a one-off neighbour), named terms before
    network partners. Returns ``paths`` links per related perturbation, in words (:func:`describe_link`).

    ``lead`` (one relation per related perturbation, e.g. its strongest) puts that relation's best link
    first, so that the first link always shows the relation the table names."""
    cands: list[list[tuple[str, str, str, float]]] = [[] for _ in related]
    counts: Counter[tuple[str, str]] = Counter()
    for r in kg.relation_names:  # one embedding per relation of p and every related perturbation
        for k, shared in enumerate(kg.shared_features_many(p, related, r, top=pool)):
            cands[k].extend((r, fid, label, contrib) for fid, label, contrib in shared)
    for found in cands:
        counts.update({(r, fid) for r, fid, _, _ in found})  # each related perturbation counts a feature once
    out = []
    for k, found in enumerate(cands):
        ranked = sorted(
            found,
            key=lambda t: (
                -(
                    t[3]
                    * _KIND_WEIGHT.get(kg.relations[t[0]].kind, 1.0)
                    * (1.0 + np.log(counts[(t[0], t[1])]))
                )
            ),
        )
        first = lead[k] if lead is not None else None
        led = [t for t in ranked if t[0] == first][:1]
        ranked = led + [t for t in ranked if t not in led]
        parts = [describe_link(r, kg.relations[r].kind, fid, label) for r, fid, label, _ in ranked[:paths]]
        out.append("; ".join(parts))
    return out


@dataclass(frozen=True)
class ContrastiveEvidence:
    """Positive and negative evidence for a batch of queries.

    Attributes:
        queries: Frame with ``perturbation`` and ``gene`` columns, one row per query (row order of the matrices).
        pool: The observed perturbations (columns of the matrices).
        weight: CSR ``queries × pool``; entry (q, j) = similarity of pool perturbation j to the query
            perturbation, stored only where j was observed on the query gene and is related (similarity > 0).
        positive: CSR, 1 where pool perturbation j is in ``weight`` and made the gene positive.
    """

    queries: pd.DataFrame
    pool: pd.Index
    weight: sp.csr_matrix
    positive: sp.csr_matrix

    @property
    def positive_weight(self) -> sp.csr_matrix:
        """Similarity mass of positive evidence (CSR)."""
        return sp.csr_matrix(self.weight.multiply(self.positive))

    @property
    def negative_weight(self) -> sp.csr_matrix:
        """Similarity mass of negative evidence (CSR)."""
        return sp.csr_matrix(self.weight - self.positive_weight)

    def summary(self) -> pd.DataFrame:
        """Per-query totals: n_pos, n_neg, pos_mass, neg_mass, max_pos, max_neg."""
        pw, nw = self.positive_weight, self.negative_weight
        pw.eliminate_zeros()
        nw.eliminate_zeros()
        return pd.DataFrame(
            {
                "n_pos_evidence": pw.getnnz(axis=1),
                "n_neg_evidence": nw.getnnz(axis=1),
                "pos_mass": np.asarray(pw.sum(axis=1)).ravel(),
                "neg_mass": np.asarray(nw.sum(axis=1)).ravel(),
                "max_pos": pw.max(axis=1).toarray().ravel(),
                "max_neg": nw.max(axis=1).toarray().ravel(),
            }
        )

    @keyword_options
    def for_query(
        self,
        i: int,
        kg: KnowledgeGraph | None = None,
        *,
        sims: SimilarityBundle | None = None,
        top: int = 10,
        paths: int = 2,
    ) -> pd.DataFrame:
        """Inspectable view of one query's evidence, strongest first within each side.

        Args:
            i: Query row.
            kg: If given, add the shared KG features that link each related perturbation to the query.
            sims: If given, add the per-relation similarities.
            top: Rows per side (positive / negative).
            paths: Shared features listed per relation.

        Returns:
            Frame with columns evidence (positive/negative), related_perturbation, similarity,
            one ``sim_<relation>`` column per relation (with ``sims``) and ``paths`` (with ``kg``).
        """
        row = self.weight.getrow(i)
        lab = self.positive.getrow(i)
        cols = row.indices
        df = pd.DataFrame(
            {
                "evidence": np.where(lab.toarray().ravel()[cols] > 0, "positive", "negative"),
                "related_perturbation": self.pool[cols].astype(str),
                "similarity": row.data,
            }
        )
        df = (
            df.sort_values(["evidence", "similarity"], ascending=[False, False])
            .groupby("evidence", sort=False)
            .head(top)
            .reset_index(drop=True)
        )
        p = str(self.queries["perturbation"].iat[i])
        lead: list[str | None] | None = None
        if sims is not None:
            qi = int(positions(sims.queries, [p])[0])
            pj = positions(sims.pool, df["related_perturbation"])
            for r, s in sims.by_relation.items():
                df[f"sim_{r}"] = s[qi, pj]
            lead = list(strongest_relations(df))
        if kg is not None:
            df["paths"] = readable_paths(kg, p, list(df["related_perturbation"]), paths=paths, lead=lead)
        return df


def strongest_relations(view: pd.DataFrame) -> pd.Series:
    """Per row of an evidence view with ``sim_<relation>`` columns: the relation of the highest similarity
    (``None`` where every similarity is 0)."""
    sim_cols = [c for c in view.columns if c.startswith("sim_")]
    if not len(view) or not sim_cols:
        return pd.Series([None] * len(view), index=view.index, dtype=object)
    values = view[sim_cols].to_numpy(dtype=np.float64)
    best = values.argmax(axis=1)
    names = np.array([c[4:] for c in sim_cols], dtype=object)[best]
    return pd.Series(np.where(values.max(axis=1) > 0, names, None), index=view.index, dtype=object)


def build_evidence(
    queries: pd.DataFrame, pool: ObservationPool, sims: SimilarityBundle
) -> ContrastiveEvidence:
    """Organise the pool's outcomes on each query's gene by relatedness to the query's perturbation.

    Args:
        queries: Rows with ``perturbation`` and ``gene``.
        pool: Observed training outcomes.
        sims: Similarities whose rows include every query perturbation and whose columns are ``pool.perturbations``.
    """
    if not sims.pool.equals(pool.perturbations):
        raise ValueError("similarity columns must be the pool's perturbations, in order")
    gi = positions(pool.genes, queries["gene"].astype(str))
    qi = positions(sims.queries, queries["perturbation"].astype(str))
    if (qi < 0).any():
        raise ValueError("some query perturbations have no similarity row")
    obs = gather_rows(sp.csr_matrix(pool.M.T), gi).tocoo()
    pos = gather_rows(sp.csr_matrix(pool.Y.T), gi)
    w = sims.combined[qi[obs.row], obs.col]
    keep = w > 0
    shape = (len(queries), len(pool.perturbations))
    weight = sp.csr_matrix((w[keep], (obs.row[keep], obs.col[keep])), shape=shape)
    pattern = weight.copy()
    pattern.data[:] = 1.0
    positive = sp.csr_matrix(pattern.multiply(pos))
    return ContrastiveEvidence(
        queries.reset_index(drop=True)[["perturbation", "gene"]], pool.perturbations, weight, positive
    )


@keyword_options
def retrieve_evidence(
    kg: KnowledgeGraph,
    queries: pd.DataFrame,
    pool: ObservationPool,
    *,
    relations: Sequence[str] | None = None,
    top_k: int = 100,
) -> tuple[ContrastiveEvidence, SimilarityBundle]:
    """KG retrieval and contrastive organisation in one step: the evidence of ``queries`` from ``pool``.

    Args:
        kg: Knowledge graph.
        queries: Rows with ``perturbation`` and ``gene`` (row order of the evidence matrices).
        pool: Observed training outcomes.
        relations: Relations to retrieve through (default: all).
        top_k: Related perturbations kept per query perturbation and relation.

    Returns:
        The evidence and the similarities behind it.
    """
    q = queries.reset_index(drop=True)
    sims = relational_similarity(
        kg,
        sorted(pd.unique(q["perturbation"].astype(str))),
        list(pool.perturbations),
        relations=relations,
        top_k=top_k,
    )
    return build_evidence(q, pool, sims), sims
