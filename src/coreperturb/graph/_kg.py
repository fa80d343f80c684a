"""A typed multi-relation knowledge graph stored as scipy.sparse matrices.

Every relation is a sparse ``genes × features`` matrix (GO terms, pathways, complexes, network neighbours),
weighted by inverse document frequency so that generic terms and hub neighbours weigh little. A perturbation
is embedded in a relation through the genes it targets: a CRISPRi perturbation targets the gene of the same
name, a drug targets the genes listed in a drug→target source. Two perturbations are related in a relation
by the cosine of their embeddings.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coreperturb._deprecation import keyword_options
from coreperturb._util import gather_rows, l2_normalize_rows, positions


def idf_weights(binary: sp.csr_matrix, n: int | None = None) -> np.ndarray:
    """Smoothed inverse document frequency of each column of a binary gene × feature matrix.

    Args:
        binary: Genes × features membership.
        n: Size of the gene universe the frequencies refer to (default: the number of rows).
    """
    df = np.asarray((binary > 0).sum(axis=0)).ravel()
    n = binary.shape[0] if n is None else n
    return np.log((n + 1.0) / (df + 1.0)).astype(np.float64)


@dataclass(frozen=True)
class Relation:
    """One relation type of the KG.

    Attributes:
        name: Registry-style name, e.g. ``go_bp`` or ``network``.
        kind: ``annotation`` (gene → term), ``gene_set`` (gene ∈ set), ``network`` (gene — gene), or
            ``structure`` (perturbation → fingerprint bit: compounds related by chemical structure).
        matrix: ``genes × features`` CSR matrix of non-negative weights (IDF-weighted); for ``structure``,
            ``row_ids × bits`` binary Morgan fingerprints.
        feature_ids: Identifier of each feature column (GO id, pathway id, neighbour gene).
        feature_labels: Human-readable label of each feature column (term name, pathway name).
        row_ids: ``structure`` only: the perturbation (compound) id of each row.
    """

    name: str
    kind: str
    matrix: sp.csr_matrix
    feature_ids: np.ndarray
    feature_labels: np.ndarray
    row_ids: pd.Index | None = None

    def __post_init__(self) -> None:
        if self.kind not in {"annotation", "gene_set", "network", "structure"}:
            raise ValueError(f"relation {self.name!r}: unknown kind {self.kind!r}")
        if (self.kind == "structure") != (self.row_ids is not None):
            raise ValueError(f"relation {self.name!r}: row_ids are given exactly for structure relations")
        if self.row_ids is not None and (
            len(self.row_ids) != self.matrix.shape[0] or not self.row_ids.is_unique
        ):
            raise ValueError(f"relation {self.name!r}: row_ids must be unique, one per matrix row")
        if self.matrix.shape[1] != len(self.feature_ids) or len(self.feature_ids) != len(self.feature_labels):
            raise ValueError(f"relation {self.name!r}: matrix columns and feature names disagree")
        if self.matrix.nnz and self.matrix.data.min() < 0:
            raise ValueError(f"relation {self.name!r}: negative weights")

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return int(self.matrix.shape[1])


EMBED_CACHE_SIZE = 256
"""Embeddings kept by :meth:`KnowledgeGraph.embed` (one per relation and query list)."""
EMBED_CACHE_ROWS = 2_048
"""Only query lists of up to this many perturbations are kept (a chunk's: its DE and direction models, and
an explanation's several retrievals, embed it once)."""
EMBED_CACHE_BYTES = 128 * 1024**2
"""...and no more than this many bytes of them (the least recently used go first)."""


def _nbytes(m: sp.csr_matrix) -> int:
    return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)


@dataclass(frozen=True)
class KnowledgeGraph:
    """Genes, relations over them, and perturbation → gene targets.

    Attributes:
        genes: The gene universe (row order of every relation matrix).
        relations: Relation name → :class:`Relation`.
        targets: Non-gene perturbation id (e.g. a DrugBank id) → target genes.
        names: Optional display names of non-gene perturbations (drug names).
    """

    genes: pd.Index
    relations: Mapping[str, Relation]
    targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.genes.is_unique:
            raise ValueError("KnowledgeGraph.genes must be unique")
        for rel in self.relations.values():
            if rel.kind != "structure" and rel.matrix.shape[0] != len(self.genes):
                raise ValueError(
                    f"relation {rel.name!r} has {rel.matrix.shape[0]} rows, expected {len(self.genes)}"
                )

    @property
    def relation_names(self) -> list[str]:
        """Relation names in insertion order."""
        return list(self.relations)

    def target_matrix(self, perturbations: Sequence[str]) -> sp.csr_matrix:
        """``perturbations × genes`` matrix of target weights (rows sum to 1 or are empty).

        A perturbation listed in :attr:`targets` (a drug) targets those genes; otherwise one named like a
        gene targets that gene; with neither, its row is empty (it has no KG information).
        """
        perts = list(perturbations)
        gidx = positions(self.genes, perts)
        direct = gidx >= 0
        if self.targets:
            direct &= ~np.fromiter((p in self.targets for p in perts), dtype=bool, count=len(perts))
        rows: list[np.ndarray] = [np.flatnonzero(direct)]
        cols: list[np.ndarray] = [gidx[direct]]
        vals: list[np.ndarray] = [np.ones(int(direct.sum()))]
        for i in np.flatnonzero(~direct):  # drugs (and names that are no gene): their targets, in order
            tg = positions(self.genes, list(self.targets.get(perts[i], ())))
            tg = tg[tg >= 0]
            rows.append(np.full(len(tg), i))
            cols.append(tg)
            vals.append(np.full(len(tg), 1.0 / max(len(tg), 1)))
        r = np.concatenate(rows)
        order = np.argsort(r, kind="stable")  # row by row, each row's targets in their order
        return sp.csr_matrix(
            (np.concatenate(vals)[order], (r[order], np.concatenate(cols)[order])),
            shape=(len(perts), len(self.genes)),
        )

    @property
    def compounds(self) -> list[str]:
        """Non-gene perturbations the KG knows: drugs with targets and compounds with a structure."""
        out = set(map(str, self.targets))
        for rel in self.relations.values():
            if rel.row_ids is not None:
                out.update(map(str, rel.row_ids))
        return sorted(out)

    def coverage(self, perturbations: Sequence[str]) -> np.ndarray:
        """Boolean ``perturbations × relations`` (in :attr:`relation_names` order): whether each perturbation
        has features in each relation, through its target genes or, for a ``structure`` relation, through its
        own fingerprint."""
        perts = list(perturbations)
        t = self.target_matrix(perts)
        out = np.zeros((len(perts), len(self.relations)), dtype=bool)
        for j, rel in enumerate(self.relations.values()):
            filled = rel.matrix.getnnz(axis=1) > 0
            if rel.row_ids is not None:
                at = positions(rel.row_ids, perts)
                out[:, j] = (at >= 0) & filled[np.maximum(at, 0)]
            else:
                out[:, j] = np.asarray(t @ filled.astype(np.float64)).ravel() > 0
        return out

    def has_info(self, perturbations: Sequence[str]) -> np.ndarray:
        """Boolean mask: which perturbations have features in at least one relation (through their target
        genes, or a chemical structure)."""
        return np.asarray(self.coverage(perturbations).any(axis=1))

    def embed(self, perturbations: Sequence[str], relation: str) -> sp.csr_matrix:
        """``perturbations × features`` embedding in one relation: L2-normalised through the targets, or
        for a ``structure`` relation the perturbation's own binary fingerprint (empty without one).

        Embeddings of up to :data:`EMBED_CACHE_ROWS` perturbations are kept for the last
        :data:`EMBED_CACHE_SIZE` requests, within :data:`EMBED_CACHE_BYTES` (thread-safe), so that the models
        of one KG (DE and direction, a chunk's and an explanation's several retrievals) compute a query's
        embedding once. The result is shared: read it, never change it in place.
        """
        perts = tuple(map(str, perturbations))
        if len(perts) > EMBED_CACHE_ROWS:
            return self._embed(perts, relation)
        cache, lock = self._embed_cache()
        key = (relation, perts)
        with lock:
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return hit
        out = self._embed(perts, relation)
        size = _nbytes(out)
        if size > EMBED_CACHE_BYTES:
            return out
        with lock:
            if key not in cache:
                cache[key] = out
                held = self.__dict__.get("_embeddings_bytes", 0) + size
                while len(cache) > EMBED_CACHE_SIZE or held > EMBED_CACHE_BYTES:
                    held -= _nbytes(cache.popitem(last=False)[1])
                self.__dict__["_embeddings_bytes"] = held
        return out

    def _embed_cache(self) -> tuple[OrderedDict[tuple[str, tuple[str, ...]], sp.csr_matrix], threading.Lock]:
        found = self.__dict__.get("_embeddings")
        if found is None:
            found = self.__dict__.setdefault("_embeddings", (OrderedDict(), threading.Lock()))
        return found

    def __deepcopy__(self, memo: dict[int, object]) -> KnowledgeGraph:
        """The graph itself: it is never changed after it is built, so a copy would only cost memory (a
        predictor's :func:`sklearn.base.clone` shares its KG, as copies of a tuple share its items)."""
        return self

    def __getstate__(self) -> dict[str, object]:
        """Pickled without the embedding cache (e.g. for Ray workers)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_embeddings", "_embeddings_bytes")}

    def _embed(self, perturbations: Sequence[str], relation: str) -> sp.csr_matrix:
        rel = self.relations[relation]
        if rel.row_ids is not None:
            return gather_rows(sp.csr_matrix(rel.matrix), positions(rel.row_ids, list(perturbations)))
        x = self.target_matrix(perturbations) @ rel.matrix
        return l2_normalize_rows(sp.csr_matrix(x), copy=False)

    def embedding_similarity(self, a: sp.csr_matrix, b: sp.csr_matrix, relation: str) -> np.ndarray:
        """Dense ``rows(a) × rows(b)`` similarity of two :meth:`embed` results (float32): the cosine, or for a
        ``structure`` relation the Tanimoto coefficient of the fingerprints."""
        prod = a @ b.T
        if self.relations[relation].kind != "structure":
            # the same float32 values, one dense copy; built from the product's arrays, because astype() would
            # sort every row's indices first (a sparse product has no duplicates to sum)
            single = sp.csr_matrix(
                (prod.data.astype(np.float32), prod.indices, prod.indptr), shape=prod.shape, copy=False
            )
            return np.asarray(single.toarray())
        inter = np.asarray(prod.toarray(), dtype=np.float64)
        na = np.asarray(a.getnnz(axis=1), dtype=np.float64)
        nb = np.asarray(b.getnnz(axis=1), dtype=np.float64)
        union = na[:, None] + nb[None, :] - inter
        return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0).astype(np.float32)

    def similarity(self, queries: Sequence[str], pool: Sequence[str], relation: str) -> np.ndarray:
        """Dense similarity ``len(queries) × len(pool)`` in one relation (float32; cosine, or Tanimoto for
        ``structure`` relations)."""
        return self.embedding_similarity(self.embed(queries, relation), self.embed(pool, relation), relation)

    def shared_features(self, a: str, b: str, relation: str, top: int = 3) -> list[tuple[str, str, float]]:
        """The features that link ``a`` and ``b`` in ``relation``, strongest first.

        Returns:
            ``(feature_id, feature_label, contribution)`` tuples; contributions sum to the cosine.
        """
        rel = self.relations[relation]
        if rel.kind == "structure":
            t = float(self.similarity([a], [b], relation)[0, 0])
            return [("tanimoto", f"structural similarity (Tanimoto {t:.2f})", t)] if t > 0 else []
        pair = self.embed([a, b], relation)
        ea, eb = pair[0], pair[1]
        prod = ea.multiply(eb).tocsr()
        if prod.nnz == 0:
            return []
        order = np.argsort(-prod.data)[:top]
        return [
            (
                str(rel.feature_ids[prod.indices[j]]),
                str(rel.feature_labels[prod.indices[j]]),
                float(prod.data[j]),
            )
            for j in order
        ]

    def shared_features_many(
        self, a: str, others: Sequence[str], relation: str, top: int = 3
    ) -> list[list[tuple[str, str, float]]]:
        """:meth:`shared_features` of ``a`` with each of ``others`` (the same lists, in order), from one
        embedding of them all."""
        rel = self.relations[relation]
        if not others:
            return []
        if rel.kind == "structure":
            ts = self.similarity([a], list(others), relation)[0]
            return [
                [("tanimoto", f"structural similarity (Tanimoto {float(t):.2f})", float(t))] if t > 0 else []
                for t in ts
            ]
        emb = self.embed([a, *others], relation).tocsr()
        prod = emb[1:].multiply(emb[0]).tocsr()
        out = []
        for i in range(len(others)):
            lo, hi = prod.indptr[i], prod.indptr[i + 1]
            data, idx = prod.data[lo:hi], prod.indices[lo:hi]
            keep = data != 0
            data, idx = data[keep], idx[keep]
            order = np.argsort(-data, kind="stable")[:top]
            out.append(
                [
                    (str(rel.feature_ids[idx[j]]), str(rel.feature_labels[idx[j]]), float(data[j]))
                    for j in order
                ]
            )
        return out

    def summary(self) -> pd.DataFrame:
        """One row per relation: name, kind, genes covered, features, non-zeros."""
        rows = []
        for r in self.relations.values():
            rows.append(
                {
                    "relation": r.name,
                    "kind": r.kind,
                    "genes_covered": int((r.matrix.getnnz(axis=1) > 0).sum()),
                    "features": r.n_features,
                    "nnz": int(r.matrix.nnz),
                }
            )
        return pd.DataFrame(rows)


@keyword_options
def relation_from_pairs(
    name: str,
    kind: str,
    genes: pd.Index,
    gene_col: Iterable[str],
    *,
    feature_col: Iterable[str],
    labels: Mapping[str, str] | None = None,
    hub_cap: float | None = None,
    n_universe: int | None = None,
) -> Relation:
    """Build an IDF-weighted relation from (gene, feature) pairs; genes outside ``genes`` are dropped.

    Args:
        hub_cap: If set, features attached to more than this fraction of genes (and to more than 50 genes)
            are dropped: extreme hubs such as "protein binding" carry no specificity.
        n_universe: Gene count that IDF and the hub fraction refer to (default ``len(genes)``). The KG
            builder passes the genes its sources mention, so that genes added only to widen the index
            (e.g. the readouts of the loaded cell lines) change no weight.
    """
    g = np.asarray(list(gene_col), dtype=object)
    f = np.asarray(list(feature_col), dtype=object)
    gi = positions(genes, g)
    keep = gi >= 0
    feats = pd.Index(pd.unique(f[keep]))
    fi = positions(feats, f[keep])
    binary = sp.csr_matrix((np.ones(int(keep.sum())), (gi[keep], fi)), shape=(len(genes), len(feats)))
    binary.sum_duplicates()
    binary.data[:] = 1.0
    n = len(genes) if n_universe is None else n_universe
    if hub_cap is not None and len(feats):
        frac = np.asarray(binary.sum(axis=0)).ravel() / max(n, 1)
        size = np.asarray(binary.sum(axis=0)).ravel()
        cols = np.flatnonzero((frac <= hub_cap) | (size <= 50))
        binary = binary[:, cols]
        feats = feats[cols]
    weighted = sp.csr_matrix(binary @ sp.diags(idf_weights(binary, n)))
    weighted.eliminate_zeros()
    ids = np.asarray(feats.astype(str))
    lab = np.asarray([labels.get(x, x) for x in ids] if labels else ids, dtype=object)
    return Relation(name=name, kind=kind, matrix=weighted, feature_ids=ids, feature_labels=lab)
