"""Evidence from other contexts: the same perturbations observed in other cell lines (training rows only).

A perturbation that is unseen in one cell line has often been measured in another. Its outcomes there say
how strong it is (its overall DE rate), what it did to the same readout gene, and which perturbations
responded alike — a data-driven relation to the perturbations observed in the target line. Every feature
is vectorised sparse/dense algebra over ``perturbations × genes`` matrices; nothing loops over queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coreperturb._util import l2_normalize_rows, logit, positions
from coreperturb.evidence._contrastive import gather_rows
from coreperturb.evidence._features import (
    FeatureParams,
    co_response,
    gene_columns,
    local_positions,
    shrunk_vote,
)
from coreperturb.evidence._pool import ObservationPool
from coreperturb.evidence._similarity import keep_top_k

CONTEXT_COLUMNS = ("cell_line", "perturbation", "gene", "label")


def check_context(context: pd.DataFrame, train: pd.DataFrame) -> None:
    """Refuse context rows that could leak the labels being predicted.

    Raises:
        ValueError: Missing columns, test-split rows, or a context cell line that is also the training one.
    """
    missing = [c for c in CONTEXT_COLUMNS if c not in context.columns]
    if missing:
        raise ValueError(f"context rows need columns {list(CONTEXT_COLUMNS)}; missing {missing}")
    if "split" in context.columns and (context["split"].astype(str) != "train").any():
        raise ValueError("context rows must be training rows only (found split != 'train')")
    if "cell_line" in train.columns:
        shared = sorted(set(context["cell_line"].astype(str)) & set(train["cell_line"].astype(str)))
        if shared:
            raise ValueError(
                f"context shares cell line(s) {shared} with the training rows; context must come from "
                "other cell lines, or the model would read its own labels"
            )
    if "task" in context.columns and "task" in train.columns:
        extra = sorted(set(context["task"].astype(str)) - set(train["task"].astype(str)))
        if extra:
            raise ValueError(f"context has task(s) {extra} that the training rows do not have")


@dataclass(frozen=True)
class ContextEvidence:
    """Observation pools of other contexts and their module-smoothed response profiles.

    Attributes:
        pools: Context name (cell line) → its training outcomes.
        profiles: Context name → L2-normalised ``perturbations × genes`` profile: observed outcomes minus
            the gene's base rate, smoothed over co-responding genes (each perturbation is observed on a
            different random subset of genes, so raw profiles barely overlap).
        top_k: Most response-similar target-line perturbations kept per query perturbation.
        prior_strength: Pseudo-count of the gene's base rate in the context vote.
    """

    pools: dict[str, ObservationPool]
    profiles: dict[str, sp.csr_matrix]
    top_k: int = 50
    prior_strength: float = 1.0

    @classmethod
    def from_frame(
        cls,
        context: pd.DataFrame,
        module_k: int = FeatureParams.module_k,
        module_self: float = FeatureParams.module_self,
        top_k: int = 50,
        prior_strength: float = FeatureParams.prior_strength,
    ) -> ContextEvidence:
        """Build from context rows (cell_line, perturbation, gene, label)."""
        pools: dict[str, ObservationPool] = {}
        profiles: dict[str, sp.csr_matrix] = {}
        for name, rows in context.groupby(context["cell_line"].astype(str), sort=True):
            pool = ObservationPool.from_frame(rows)
            resid = sp.csr_matrix(pool.Y - pool.M.multiply(pool.gene_rate()[None, :]))
            smooth = co_response(pool, module_k, module_self)
            pools[str(name)] = pool
            profiles[str(name)] = l2_normalize_rows(sp.csr_matrix(resid @ smooth.T))
        return cls(pools, profiles, top_k, prior_strength)

    def _per_context(self, qp: list[str], pool: ObservationPool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query perturbation: contexts that observed it, its mean relative logit rate there, and its
        response similarity to the pool's perturbations (non-negative, top-k per row)."""
        rate_sum = np.zeros(len(qp))
        n_ctx = np.zeros(len(qp))
        sim = np.zeros((len(qp), len(pool.perturbations)), dtype=np.float32)
        both = np.zeros_like(sim)
        for name, cpool in self.pools.items():
            ki = positions(cpool.perturbations, qp)
            seen = ki >= 0
            prate = np.clip(cpool.perturbation_rate[ki[seen]], 1e-3, 1.0)
            rate_sum[seen] += logit(prate) - logit(np.array([cpool.global_rate]))[0]
            n_ctx += seen
            prof = self.profiles[name]
            kp = positions(cpool.perturbations, list(pool.perturbations))
            a = gather_rows(prof, ki)
            b = gather_rows(prof, kp)
            sim += np.asarray((a @ b.T).toarray(), dtype=np.float32)
            both += np.outer(seen, kp >= 0).astype(np.float32)
        sim = keep_top_k(np.maximum(sim / np.maximum(both, 1.0), 0.0), self.top_k)
        rate = np.where(n_ctx > 0, rate_sum / np.maximum(n_ctx, 1), 0.0)
        return n_ctx, rate, sim

    def features(self, queries: pd.DataFrame, pool: ObservationPool) -> pd.DataFrame:
        """Context features of every query (p, g), voting over ``pool`` (the target line's training outcomes).

        Columns: ``ctx_n`` (contexts that observed p), ``ctx_rate`` (mean over them of p's logit DE rate
        minus the context's global logit rate; 0 when unobserved), ``ctx_pair_n`` / ``ctx_pair_pos``
        (contexts that observed the pair (p, g) / found it positive), ``vote_ctx`` / ``mass_ctx`` (vote over
        target-line perturbations whose responses in the contexts resemble p's, shrunk to g's base rate with
        pseudo-count :attr:`prior_strength`).
        """
        qp = sorted(pd.unique(queries["perturbation"].astype(str)))
        qperts = queries["perturbation"].astype(str).to_numpy()
        qgenes = queries["gene"].astype(str).to_numpy()
        qi = positions(pd.Index(qp), qperts)
        gi = positions(pool.genes, qgenes)
        n_ctx, rate, sim = self._per_context(qp, pool)
        pair_n = np.zeros(len(queries))
        pair_pos = np.zeros(len(queries))
        for cpool in self.pools.values():
            pk = positions(cpool.perturbations, qp)[qi]
            gk = positions(cpool.genes, qgenes)
            ok = (pk >= 0) & (gk >= 0)
            if ok.any():
                pair_n[ok] += np.asarray(cpool.M[pk[ok], gk[ok]], dtype=np.float64).ravel()
                pair_pos[ok] += np.asarray(cpool.Y[pk[ok], gk[ok]], dtype=np.float64).ravel()
        work = gene_columns(gi, len(pool.genes))  # few genes: their columns only (the same numbers)
        vote, mass = shrunk_vote(
            sim,
            pool,
            qi,
            local_positions(gi, work),
            b=pool.rate_of(qgenes),
            a=self.prior_strength,
            work=work,
        )
        return pd.DataFrame(
            {
                "ctx_n": n_ctx[qi],
                "ctx_rate": rate[qi],
                "ctx_pair_n": pair_n,
                "ctx_pair_pos": pair_pos,
                "vote_ctx": vote,
                "mass_ctx": mass,
            }
        )

    def for_query(
        self, perturbation: str, gene: str, pool: ObservationPool, top: int = 8
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Inspectable view of one query's context evidence.

        Args:
            perturbation: Query perturbation.
            gene: Readout gene.
            pool: The target line's training outcomes.
            top: Response-similar perturbations listed.

        Returns:
            ``(contexts, similar)``. ``contexts``: one row per context with ``cell_line``,
            ``perturbation_observed``, ``perturbation_rate`` (its positive rate there), ``context_rate``
            (that line's overall rate), ``pair`` (``positive`` / ``negative`` / ``not measured``).
            ``similar``: the target-line perturbations measured on ``gene`` whose responses in the
            contexts resemble the query's (the evidence of ``vote_ctx``), strongest first, with
            ``similarity`` and their ``outcome`` (positive / negative) on ``gene``.
        """
        rows = []
        for name, cpool in self.pools.items():
            k = int(positions(cpool.perturbations, [perturbation])[0])
            g = int(positions(cpool.genes, [gene])[0])
            pair = "not measured"
            if k >= 0 and g >= 0 and cpool.M[k, g]:
                pair = "positive" if cpool.Y[k, g] else "negative"
            rows.append(
                {
                    "cell_line": name,
                    "perturbation_observed": k >= 0,
                    "perturbation_rate": float(cpool.perturbation_rate[k]) if k >= 0 else float("nan"),
                    "context_rate": cpool.global_rate,
                    "pair": pair,
                }
            )
        _, _, sim = self._per_context([perturbation], pool)
        g = int(positions(pool.genes, [gene])[0])
        cols = np.flatnonzero(sim[0] > 0)
        cols = cols[pool.M[cols, g].toarray().ravel() > 0] if g >= 0 else cols[:0]
        cols = cols[np.argsort(-sim[0, cols], kind="stable")][:top]
        positive = pool.Y[cols, g].toarray().ravel() > 0 if g >= 0 else np.zeros(0, dtype=bool)
        similar = pd.DataFrame(
            {
                "related_perturbation": pool.perturbations[cols].astype(str),
                "similarity": sim[0, cols].astype(np.float64),
                "outcome": np.where(positive, "positive", "negative"),
            }
        )
        return pd.DataFrame(rows), similar


__all__ = ["CONTEXT_COLUMNS", "ContextEvidence", "check_context"]
