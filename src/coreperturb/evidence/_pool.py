"""Observed training outcomes as sparse ``perturbations × genes`` matrices."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coreperturb._util import positions


def _sorted_codes(values: pd.Series) -> tuple[pd.Index, np.ndarray]:
    """The sorted distinct values and each value's position among them (one hashing pass)."""
    codes, uniques = pd.factorize(values)
    order = np.argsort(np.asarray(uniques, dtype=object), kind="stable")
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    return pd.Index(np.asarray(uniques, dtype=object)[order]), rank[codes]


def _frozen(a: np.ndarray) -> np.ndarray:
    """``a``, read-only: a cached rate is shared by every caller."""
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class ObservationPool:
    """Training outcomes: which (perturbation, gene) pairs were observed and which were positive.

    Never changed after it is built: its rates are computed once (cached on the instance).

    Attributes:
        perturbations: Row index (training perturbations).
        genes: Column index (readout genes seen anywhere in the benchmark unit).
        Y: CSR, 1 where the pair was observed positive (DE, or "up" for the direction task).
        M: CSR, 1 where the pair was observed.
    """

    perturbations: pd.Index
    genes: pd.Index
    Y: sp.csr_matrix
    M: sp.csr_matrix

    @classmethod
    def from_frame(cls, train: pd.DataFrame, genes: pd.Index | None = None) -> ObservationPool:
        """Build from rows with columns perturbation, gene, label."""
        perts, pi = _sorted_codes(train["perturbation"].astype(str))
        if genes is None:
            genes, gi = _sorted_codes(train["gene"].astype(str))
        else:
            gi = positions(genes, train["gene"].astype(str))
        keep = gi >= 0
        shape = (len(perts), len(genes))
        y = train["label"].to_numpy(dtype=np.float64)[keep]
        Y = sp.csr_matrix((y, (pi[keep], gi[keep])), shape=shape)
        Y.eliminate_zeros()
        M = sp.csr_matrix((np.ones(int(keep.sum())), (pi[keep], gi[keep])), shape=shape)
        return cls(perts, genes, Y, M)

    @cached_property
    def gene_pos(self) -> np.ndarray:
        """Positives per gene (read-only)."""
        return _frozen(np.asarray(self.Y.sum(axis=0)).ravel())

    @cached_property
    def gene_obs(self) -> np.ndarray:
        """Observations per gene (read-only)."""
        return _frozen(np.asarray(self.M.sum(axis=0)).ravel())

    def gene_rate(self, prior: float = 0.5) -> np.ndarray:
        """Smoothed positive rate of each gene: (pos + 2·prior·global_rate) / (obs + 2·prior)."""
        g = self.global_rate
        return (self.gene_pos + prior * 2 * g) / (self.gene_obs + prior * 2)

    def rate_of(self, genes: Iterable[str]) -> np.ndarray:
        """:meth:`gene_rate` of each of ``genes``; the global rate for genes never observed in the pool."""
        gi = positions(self.genes, genes)
        return np.where(gi >= 0, self.gene_rate()[np.maximum(gi, 0)], self.global_rate)

    @cached_property
    def global_rate(self) -> float:
        """Overall positive rate."""
        return float(self.Y.sum() / max(self.M.sum(), 1))

    @cached_property
    def perturbation_rate(self) -> np.ndarray:
        """Positive rate of each training perturbation over its observed genes (its 'strength')."""
        obs = np.asarray(self.M.sum(axis=1)).ravel()
        return _frozen(np.asarray(self.Y.sum(axis=1)).ravel() / np.maximum(obs, 1))

    def subset(self, perturbations: pd.Index) -> ObservationPool:
        """Pool restricted to some perturbations (same gene columns)."""
        idx = positions(self.perturbations, perturbations)
        if (idx < 0).any():
            raise KeyError("subset() got perturbations that are not in the pool")
        return ObservationPool(pd.Index(perturbations), self.genes, self.Y[idx], self.M[idx])
