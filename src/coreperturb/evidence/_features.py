"""Vectorised evidence features for every query: per-relation contrastive votes and their context.

All features are sparse/dense matrix algebra over ``queries × pool`` similarities and the pool's
``perturbations × genes`` outcomes; nothing loops over queries in Python.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coreperturb._deprecation import keyword_options
from coreperturb._util import l2_normalize_rows, positions
from coreperturb._util import logit as _logit
from coreperturb.evidence._contrastive import gather_rows
from coreperturb.evidence._pool import ObservationPool
from coreperturb.evidence._similarity import SimilarityBundle, keep_top_k
from coreperturb.graph._kg import KnowledgeGraph


@dataclass(frozen=True)
class FeatureParams:
    """Knobs of the evidence features.

    Attributes:
        prior_strength: Pseudo-count of the gene's base rate in every vote (shrinks thin evidence to the prior).
        module_k: Co-responding genes kept per gene for the gene-module smoothed vote.
        module_self: Weight of the gene itself in the module smoothing.
    """

    prior_strength: float = 1.0
    module_k: int = 20
    module_self: float = 1.0


def _at(dense_q_by_g: np.ndarray, qi: np.ndarray, gi: np.ndarray, fill: float = 0.0) -> np.ndarray:
    ok = gi >= 0
    out = np.full(len(qi), fill, dtype=np.float64)
    out[ok] = dense_q_by_g[qi[ok], gi[ok]]
    return out


class _Cells:
    """Reads ``queries × genes`` matrices at the queries' cells ``(qi, gi)`` (``gi = -1``: ``fill``).

    The flat positions are computed once per feature matrix; equal to :func:`_at`."""

    def __init__(self, qi: np.ndarray, gi: np.ndarray, n_genes: int) -> None:
        self.qi, self.gi, self.n_genes = qi, gi, n_genes
        self.ok = gi >= 0
        self.all_ok = bool(self.ok.all())
        self.flat = np.asarray(qi, dtype=np.int64) * n_genes + np.maximum(gi, 0)

    def prior(self, b: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
        """``(a * b, logit(b))`` of the queries' base rates, computed once for all relations."""
        key = (id(b), a)
        if getattr(self, "_prior_key", None) != key:
            self._prior_key = key
            self._prior = (a * b, _logit(b))
        return self._prior

    def __call__(self, dense_q_by_g: np.ndarray, fill: float = 0.0) -> np.ndarray:
        dense = np.asarray(dense_q_by_g)
        if dense.ndim != 2 or dense.shape[1] != self.n_genes:
            return _at(dense, self.qi, self.gi, fill)
        out = np.take(dense, self.flat).astype(np.float64, copy=False)
        if not self.all_ok:
            out = np.where(self.ok, out, fill)
        return out


def _sim_times(s: np.ndarray, m: sp.csr_matrix, mt: sp.csr_matrix | None = None) -> np.ndarray:
    """Dense ``s @ m`` for dense ``s`` (queries × pool) and sparse ``m`` (pool × genes); ``mt`` = a cached
    ``csr_matrix(m.T)``.

    When ``mt`` holds few genes (a :meth:`PreparedPool.columns` view), only the pool perturbations that
    observed them are read from ``s``, converted once: the same sums in the same order."""
    mt = sp.csr_matrix(m.T) if mt is None else mt
    if mt.shape[0] * 4 < mt.shape[1]:
        used = np.unique(mt.indices)
        sub = sp.csr_matrix(
            (mt.data, np.searchsorted(used, mt.indices), mt.indptr), shape=(mt.shape[0], len(used))
        )
        dense = np.ascontiguousarray(np.asarray(s)[:, used].T, dtype=np.result_type(s.dtype, mt.dtype))
        return np.asarray((sub @ dense).T)
    return np.asarray((mt @ s.T).T)


def _masses(s: np.ndarray, yt: sp.csr_matrix, mt: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """``(s @ Y, s @ M)`` from the cached transposes; for few genes in one product (one read of ``s``)."""
    if yt.shape[0] * 4 < yt.shape[1]:
        both = _sim_times(s, yt, sp.csr_matrix(sp.vstack([yt, mt], format="csr")))
        return both[:, : yt.shape[0]], both[:, yt.shape[0] :]
    return _sim_times(s, yt, yt), _sim_times(s, mt, mt)


def gene_columns(gi: np.ndarray, n_genes: int, neighbours: sp.csr_matrix | None = None) -> np.ndarray | None:
    """The gene columns a batch of queries needs, when they are few: the genes it reads (``gi >= 0``) and,
    with ``neighbours`` (a genes × genes matrix such as the module smoothing), the genes their rows
    reach; ``None`` when that is a large share of the ``n_genes`` (then every column is computed).

    Every ``queries × genes`` feature matrix is column-wise (a column depends on that gene's, or its
    neighbours', columns of the pool only), so computing the needed columns alone gives the same numbers,
    bit for bit, at a fraction of the cost: one gene × every candidate perturbation costs about what one
    column costs, not the whole grid's matrices."""
    # a count per gene, not a sort: this runs on every chunk of a genome-wide grid, where it finds all genes
    seen = np.bincount(gi[gi >= 0], minlength=n_genes) > 0
    n_read = int(seen.sum())
    if n_read * 4 >= n_genes or not n_read:  # many genes, or none the pool observed (all read -1)
        return None
    read = np.flatnonzero(seen)
    work = read if neighbours is None else np.union1d(read, sp.csr_matrix(neighbours)[read].indices)
    return work if len(work) * 2 < n_genes else None


def local_positions(gi: np.ndarray, work: np.ndarray | None) -> np.ndarray:
    """``gi`` as positions in ``work`` (sorted, holding every ``gi >= 0``); -1 stays -1."""
    if work is None:
        return gi
    return np.where(gi >= 0, np.searchsorted(work, np.maximum(gi, 0)), -1)


def co_response(pool: ObservationPool, k: int, self_weight: float) -> sp.csr_matrix:
    """Gene × gene smoothing matrix: cosine of co-positive counts, top-``k`` per gene, plus ``self_weight``·I."""
    co = sp.csr_matrix(pool.Y.T @ pool.Y).astype(np.float32)
    d = np.sqrt(co.diagonal()) + 1e-9
    co = sp.csr_matrix(sp.diags(1 / d) @ co @ sp.diags(1 / d))
    co.setdiag(0)
    co.eliminate_zeros()
    co = _top_k_sparse(co, k)
    return sp.csr_matrix(co + self_weight * sp.identity(co.shape[0], format="csr"))


@keyword_options
def shrunk_vote(
    s: np.ndarray,
    pool: ObservationPool,
    qi: np.ndarray,
    gi: np.ndarray,
    *,
    b: np.ndarray,
    a: float,
    prepared: PreparedPool | None = None,
    cells: _Cells | None = None,
    work: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-weighted vote of the pool's outcomes on each query's gene, shrunk toward its base rate.

    Args:
        s: ``queries × pool`` similarities (rows = query perturbations).
        pool: Observed outcomes.
        qi: Row of ``s`` of each query; gi: column of ``pool.genes`` of each query (-1 = unobserved gene).
        b: Base rate of each query's gene; a: its pseudo-count.
        prepared: Cached transposes of the pool (:class:`PreparedPool`).
        cells: The reader of ``(qi, gi)`` cells, when the caller has one.
        work: Compute only these gene columns (:func:`gene_columns`); ``gi`` then holds positions in
            ``work`` (:func:`local_positions`).

    Returns:
        ``(logit((pos + a·b) / (tot + a)) − logit(b), log1p(tot))``: the vote and the log evidence mass.
    """
    yt = prepared.YT if prepared is not None else sp.csr_matrix(pool.Y.T)
    mt = prepared.MT if prepared is not None else sp.csr_matrix(pool.M.T)
    if work is not None:
        yt, mt = sp.csr_matrix(yt[work]), sp.csr_matrix(mt[work])
    return _vote(*_masses(s, yt, mt), qi, gi, b=b, a=a, cells=cells)


def _vote(
    pos_dense: np.ndarray,
    tot_dense: np.ndarray,
    qi: np.ndarray,
    gi: np.ndarray,
    *,
    b: np.ndarray,
    a: float,
    cells: _Cells | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shrunk_vote` from the ``queries × genes`` positive and total similarity masses."""
    at = cells if cells is not None else _Cells(qi, gi, pos_dense.shape[1])
    pos = at(pos_dense)
    tot = at(tot_dense)
    ab, logit_b = (a * b, _logit(b)) if cells is None else cells.prior(b, a)
    return _logit((pos + ab) / (tot + a)) - logit_b, np.log1p(tot)


@dataclass(frozen=True)
class PreparedPool:
    """Everything about an evidence pool that the features need and that does not depend on the queries.

    Built once per fitted model (:meth:`build`) and reused for every batch of queries, so a genome-wide
    prediction does not redo the pool's transposes, gene-module smoothing, gene embeddings or evidence
    layout for each chunk. The features are bit-identical with and without it.
    """

    pool: ObservationPool
    YT: sp.csr_matrix
    MT: sp.csr_matrix
    smooth: sp.csr_matrix
    gy: np.ndarray
    gm: np.ndarray
    gene_embeddings: dict[str, sp.csr_matrix]
    z: sp.csr_matrix
    pool_embeddings: dict[str, sp.csr_matrix]

    @classmethod
    def build(
        cls,
        pool: ObservationPool,
        kg: KnowledgeGraph,
        params: FeatureParams | None = None,
        relations: list[str] | None = None,
    ) -> PreparedPool:
        """Precompute the query-independent parts of :func:`features_at` for ``pool``."""
        params = params or FeatureParams()
        smooth = co_response(pool, params.module_k, params.module_self)
        gy = np.asarray(pool.Y.sum(axis=0)).ravel() @ smooth.T + 1e-7
        gm = np.asarray(pool.M.sum(axis=0)).ravel() @ smooth.T + 1e-6
        genes = list(pool.genes)
        gene_emb = {r: kg.embed(genes, r) for r in ("network", "go_bp") if r in kg.relations}
        centred = sp.csr_matrix(pool.Y.T - pool.M.T.multiply(pool.perturbation_rate[None, :]))
        rels = list(relations) if relations is not None else kg.relation_names
        perts = list(pool.perturbations)
        return cls(
            pool=pool,
            YT=sp.csr_matrix(pool.Y.T),
            MT=sp.csr_matrix(pool.M.T),
            smooth=smooth,
            gy=np.asarray(gy),
            gm=np.asarray(gm),
            gene_embeddings=gene_emb,
            z=l2_normalize_rows(centred),
            pool_embeddings={r: kg.embed(perts, r) for r in rels},
        )

    def columns(self, work: np.ndarray) -> PreparedPool:
        """The gene-indexed parts restricted to the genes ``work`` (positions in ``pool.genes``, sorted):
        what :func:`features_at` reads when its queries need those genes only. The module smoothing keeps
        the rows and columns of ``work``, so it is exact for genes whose neighbours are all in ``work``
        (:func:`gene_columns` makes sure of it for the genes read)."""
        return dataclasses.replace(
            self,
            YT=sp.csr_matrix(self.YT[work]),
            MT=sp.csr_matrix(self.MT[work]),
            smooth=sp.csr_matrix(self.smooth[work][:, work]),
            gene_embeddings={r: sp.csr_matrix(e[work]) for r, e in self.gene_embeddings.items()},
            z=sp.csr_matrix(self.z[work]),
        )


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


def signed_links(kg: KnowledgeGraph, perturbations: list[str], genes: pd.Index) -> np.ndarray:
    """``perturbations × genes``: +1 where a perturbation's target TF activates the gene, −1 where it represses
    it (DoRothEA ``dorothea_targets`` features ``TARGET+`` / ``TARGET-``), averaged over a drug's targets."""
    rel = kg.relations["dorothea_targets"]
    ids = np.asarray(rel.feature_ids, dtype=str)
    sign = np.where(np.char.endswith(ids, "+"), 1.0, -1.0)
    col = positions(genes, [i[:-1] for i in ids])
    ok = col >= 0
    binary = sp.csr_matrix(rel.matrix, copy=True)
    binary.data[:] = 1.0
    to_genes = sp.csr_matrix((sign[ok], (np.flatnonzero(ok), col[ok])), shape=(len(ids), len(genes)))
    return np.asarray((kg.target_matrix(perturbations) @ binary @ to_genes).toarray())


@keyword_options
def evidence_matrices(
    s: np.ndarray,
    pool: ObservationPool,
    *,
    max_cells: int = 8_000_000,
    numba_kernels: bool | None = None,
    work: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Contrastive evidence summarised per (query perturbation, gene), for every gene of the pool at once.

    For query perturbation row ``q`` of ``s`` (``queries × pool`` similarities) and gene ``g``, the evidence
    is the pool perturbations observed on ``g`` with similarity > 0: ``n_pos`` / ``n_neg`` count those that
    made ``g`` positive / left it negative, ``max_pos`` / ``max_neg`` are their largest similarities (0 when
    none). Computed as segment reductions over the pool's observations grouped by gene (``numpy.ufunc.
    reduceat``), in blocks of query rows so that a block's ``rows × observations`` matrix stays below
    ``max_cells``; equal to :meth:`ContrastiveEvidence.summary` of :func:`build_evidence`. With numba (a
    dependency) one compiled pass over the observations does the same, ~10× faster on large inputs;
    ``numba_kernels`` ``None`` (default) uses it from a million query × observation cells up (below, loading
    numba costs more than it saves), ``True`` / ``False`` force it on / off.

    Returns:
        ``n_pos``, ``n_neg`` (int32) and ``max_pos``, ``max_neg`` (float32), each ``queries × genes`` (the
        genes ``work`` only, in its order, when given).
    """
    both = sp.csr_matrix(sp.csr_matrix(pool.M.T) + sp.csr_matrix(pool.Y.T))  # 1 = observed, 2 = positive
    if work is not None:
        both = sp.csr_matrix(both[work])
    n_q, n_g = s.shape[0], both.shape[0]
    both.sum_duplicates()
    both.sort_indices()
    idx, pos = both.indices, both.data > 1.5
    starts = both.indptr[:-1]
    filled = np.diff(both.indptr) > 0
    seg = starts[filled]
    out = {
        "n_pos": np.zeros((n_q, n_g), dtype=np.int32),
        "n_neg": np.zeros((n_q, n_g), dtype=np.int32),
        "max_pos": np.zeros((n_q, n_g), dtype=np.float32),
        "max_neg": np.zeros((n_q, n_g), dtype=np.float32),
    }
    if not len(idx) or not n_q:
        return out
    if numba_kernels is None:  # small inputs: NumPy (the same numbers; numba loads in ~0.5 s)
        numba_kernels = n_q * len(idx) >= 1_000_000
    if numba_kernels:
        try:
            from coreperturb.evidence._kernels import evidence_cells
        except ImportError:  # pragma: no cover - numba is a dependency; the NumPy path below is equal
            pass
        else:
            evidence_cells(
                np.ascontiguousarray(s, dtype=np.float64),
                both.indptr.astype(np.int64),
                idx.astype(np.int64),
                pos,
                out["n_pos"],
                out["n_neg"],
                out["max_pos"],
                out["max_neg"],
            )
            return out
    step = max(1, max_cells // len(idx))
    for lo in range(0, n_q, step):
        v = np.asarray(s[lo : lo + step][:, idx], dtype=np.float32)
        kept = v > 0
        out["n_pos"][lo : lo + step, filled] = np.add.reduceat(kept & pos, seg, axis=1)
        out["n_neg"][lo : lo + step, filled] = np.add.reduceat(kept & ~pos, seg, axis=1)
        out["max_pos"][lo : lo + step, filled] = np.maximum.reduceat(np.where(pos, v, 0), seg, axis=1)
        out["max_neg"][lo : lo + step, filled] = np.maximum.reduceat(np.where(pos, 0, v), seg, axis=1)
    return out


@keyword_options
def evidence_features(
    queries: pd.DataFrame,
    pool: ObservationPool,
    sims: SimilarityBundle,
    kg: KnowledgeGraph,
    *,
    params: FeatureParams | None = None,
    counts: bool = False,
) -> pd.DataFrame:
    """Features of every query (p, g) computed from its contrastive evidence.

    With ``counts=True`` two more columns, ``n_pos_evidence`` and ``n_neg_evidence`` (how many related
    perturbations made g positive / left it negative), come last; they are for display, not for models.
    See :func:`features_at` for the columns.
    """
    qi = positions(sims.queries, queries["perturbation"].astype(str))
    gi = positions(pool.genes, queries["gene"].astype(str))
    return pd.DataFrame(features_at(qi, gi, pool, sims, kg, params=params, counts=counts))


@keyword_options
def features_at(
    qi: np.ndarray,
    gi: np.ndarray,
    pool: ObservationPool,
    sims: SimilarityBundle,
    kg: KnowledgeGraph,
    *,
    params: FeatureParams | None = None,
    counts: bool = False,
    prepared: PreparedPool | None = None,
    as_dict: bool = False,
) -> pd.DataFrame | dict[str, np.ndarray]:
    """Evidence features of the queries (``sims.queries[qi]``, ``pool.genes[gi]``; ``gi = -1``: a gene the
    pool never observed).

    Columns: ``base`` (logit gene base rate in the pool), ``log_obs``; for every relation ``r`` and for
    ``combined``: ``vote_r`` (logit of the positive share of related evidence shrunk toward the gene's base
    rate, minus ``base``), ``mass_r`` (log evidence mass) and ``strength_r`` (related perturbations' overall
    positive rate); contrastive extremes ``max_pos``, ``max_neg``; ``module_vote`` (the vote pooled over
    genes that co-respond with g in training); direct p–g links ``pg_<relation>``; ``p_readout`` /
    ``p_is_readout`` (how p's own gene behaves as a readout) and ``co_response`` (whether p's and g's genes
    respond together in training).

    Every feature is first computed as a ``query perturbations × genes`` matrix (sparse / dense matrix
    products and segment reductions) and then read at ``(qi, gi)``, so a whole perturbations × genes grid
    costs the same matrix products as a few pairs, and a pair's features never depend on the other pairs.
    Every feature is computed from the pool alone, so cross-fitted training features (pool = the other
    folds) are made exactly as test features are (pool = all training perturbations). Mixing in gene rates
    computed on all training data would leak: a model could read a fold's own labels from the difference
    between the full-data and the pool gene rate. ``prepared`` (:class:`PreparedPool` of the same pool and
    parameters) skips recomputing the pool's query-independent parts; the result is the same. With
    ``as_dict`` the columns come back as a dict of arrays (no DataFrame is built).
    """
    params = params or FeatureParams()
    if prepared is None or prepared.pool is not pool:
        prepared = PreparedPool.build(pool, kg, params, list(sims.by_relation))
    # few genes (one gene x every candidate): the matrices below are computed for the columns they need
    work = gene_columns(gi, len(pool.genes), prepared.smooth)
    view = prepared if work is None else prepared.columns(work)
    at = _Cells(qi, local_positions(gi, work), len(pool.genes) if work is None else len(work))
    rate = pool.gene_rate()
    b = np.where(gi >= 0, rate[np.maximum(gi, 0)], pool.global_rate)
    feats: dict[str, np.ndarray] = {
        "base": _logit(b),
        "log_obs": np.log1p(np.where(gi >= 0, pool.gene_obs[np.maximum(gi, 0)], 0)),
    }
    a = params.prior_strength
    prate = pool.perturbation_rate
    sets = dict(sims.by_relation)
    sets["combined"] = sims.combined
    # the combined similarity's masses also feed the module smoothing below: computed once
    comb = sims.combined
    comb_y, comb_m = _masses(comb, view.YT, view.MT)
    for r, s in sets.items():
        if r == "combined":
            feats[f"vote_{r}"], feats[f"mass_{r}"] = _vote(comb_y, comb_m, qi, at.gi, b=b, a=a, cells=at)
        else:
            feats[f"vote_{r}"], feats[f"mass_{r}"] = shrunk_vote(
                s, pool, qi, at.gi, b=b, a=a, prepared=view, cells=at
            )
        denom = s.sum(axis=1)
        strength = np.where(denom > 0, (s @ prate) / np.maximum(denom, 1e-12), pool.global_rate)
        feats[f"strength_{r}"] = _logit(strength)[qi]  # per query perturbation, then spread
    ev = evidence_matrices(sims.combined, pool, work=work)
    feats["max_pos"] = at(ev["max_pos"])
    feats["max_neg"] = at(ev["max_neg"])
    # gene-module smoothing: evidence on genes that co-respond with g
    smooth = view.smooth
    sy = comb_y @ smooth.T
    sm = comb_m @ smooth.T
    gy, gm = prepared.gy, prepared.gm
    grate = np.where(gi >= 0, (gy / gm)[np.maximum(gi, 0)], pool.global_rate)
    feats["module_vote"] = _logit((at(np.asarray(sy)) + a * grate) / (at(np.asarray(sm)) + a))
    feats["module_vote"] -= _logit(grate)
    feats["module_mass"] = np.log1p(at(np.asarray(sm)))
    # direct links between the perturbation's targets and the readout gene
    qperts = list(sims.queries)
    for r in ("network", "go_bp"):
        if r in kg.relations:
            ep = kg.embed(qperts, r)
            eg = view.gene_embeddings[r]
            feats[f"pg_{r}"] = at(np.asarray((ep @ eg.T).toarray()))
    if "dorothea_targets" in kg.relations:
        # signed TF -> target links: +1 where p activates g, -1 where p represses g (knocking down an
        # activator lowers its targets); only in KGs built with the opt-in `dorothea` source
        feats["pg_signed"] = at(signed_links(kg, qperts, pool.genes if work is None else pool.genes[work]))
    # the perturbed gene as a readout in training
    pidx = positions(pool.genes, qperts)
    has = pidx >= 0
    feats["p_is_readout"] = has[qi].astype(np.float64)
    feats["p_readout"] = np.where(
        has, _logit(rate[np.maximum(pidx, 0)]) - _logit(np.array([pool.global_rate]))[0], 0.0
    )[qi]
    zp = gather_rows(prepared.z, pidx)
    feats["co_response"] = at(np.asarray((zp @ view.z.T).toarray()))
    if counts:
        feats["n_pos_evidence"] = at(ev["n_pos"]).astype(np.int64)
        feats["n_neg_evidence"] = at(ev["n_neg"]).astype(np.int64)
    return feats if as_dict else pd.DataFrame(feats)


__all__ = [
    "FeatureParams",
    "PreparedPool",
    "co_response",
    "evidence_features",
    "evidence_matrices",
    "features_at",
    "gene_columns",
    "keep_top_k",
    "local_positions",
    "shrunk_vote",
    "signed_links",
]
