"""Relation-wise similarity between query perturbations and the observed (pool) perturbations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coreperturb._deprecation import keyword_options
from coreperturb.graph._kg import KnowledgeGraph


def keep_top_k(s: np.ndarray, k: int) -> np.ndarray:
    """Zero all but the ``k`` largest entries of each row (ties at the threshold are kept). Returns a copy."""
    return _top_k_inplace(np.array(s, dtype=np.float32, copy=True), k)


def _top_k_inplace(s: np.ndarray, k: int) -> np.ndarray:
    """:func:`keep_top_k` on a float32 array of the caller's own, changed in place (no copy)."""
    if k <= 0 or s.shape[1] <= k:
        return s
    # a row of non-negative values with at most k positive ones has nothing below its threshold but zeros:
    # only the other rows are partitioned (the same result, much less work on sparse relations)
    rows = np.flatnonzero((s > 0).sum(axis=1) > k) if s.size and s.min() >= 0 else np.arange(len(s))
    if len(rows) == len(s):
        thr = -np.partition(-s, k - 1, axis=1)[:, k - 1 : k]
        s[s < thr] = 0.0
    elif len(rows):
        part = s[rows]
        thr = -np.partition(-part, k - 1, axis=1)[:, k - 1 : k]
        part[part < thr] = 0.0
        s[rows] = part
    return s


@dataclass(frozen=True)
class SimilarityBundle:
    """Dense ``queries × pool`` similarities, one matrix per relation plus their combination.

    Attributes:
        queries: Query perturbations (rows).
        pool: Pool perturbations (columns).
        by_relation: Relation name → top-k sparsified similarity (float32, zeros elsewhere).
        combined: Mean of the per-relation similarities (cosines), top-k sparsified.
    """

    queries: pd.Index
    pool: pd.Index
    by_relation: dict[str, np.ndarray]
    combined: np.ndarray


@keyword_options
def relational_similarity(
    kg: KnowledgeGraph,
    queries: Sequence[str],
    pool: Sequence[str],
    *,
    relations: Sequence[str] | None = None,
    top_k: int = 100,
    exclude_self: bool = True,
    pool_embeddings: dict[str, sp.csr_matrix] | None = None,
) -> SimilarityBundle:
    """Similarity of each query perturbation to each pool perturbation in every relation.

    Args:
        kg: Knowledge graph.
        queries: Query perturbations.
        pool: Pool (training) perturbations.
        relations: Relations to use (default: all).
        top_k: Keep only the ``top_k`` most similar pool perturbations per query and relation.
        exclude_self: Zero the similarity of a perturbation to itself (when a query is also in the pool).
        pool_embeddings: Cached ``kg.embed(pool, relation)`` per relation (same result, less work).
    """
    q = pd.Index(list(queries))
    p = pd.Index(list(pool))
    rels = list(relations) if relations is not None else kg.relation_names
    raw: dict[str, np.ndarray] = {}
    for r in rels:
        if pool_embeddings is not None and r in pool_embeddings:
            s = kg.embedding_similarity(kg.embed(list(q), r), pool_embeddings[r], r)
        else:
            s = kg.similarity(list(q), list(p), r)
        if exclude_self:
            qi = p.get_indexer(q)
            hit = np.flatnonzero(qi >= 0)
            s[hit, qi[hit]] = 0.0
        raw[r] = s
    # every relation is a cosine (Tanimoto for structures) in [0, 1], so the mean needs no rescaling; in particular never by the
    # batch's maximum, which would make a query's score depend on which other queries share its batch
    combined = np.zeros((len(q), len(p)), dtype=np.float32)
    for s in raw.values():
        combined += s
    if rels:
        combined /= len(rels)
    # the raw matrices are this function's own (float32): sparsified in place, after the mean has read them
    return SimilarityBundle(
        queries=q,
        pool=p,
        by_relation={r: _top_k_inplace(np.asarray(s, dtype=np.float32), top_k) for r, s in raw.items()},
        combined=_top_k_inplace(combined, top_k),
    )
