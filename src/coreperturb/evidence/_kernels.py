"""numba kernel of :func:`coreperturb.evidence._features.evidence_matrices` (imported lazily)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def evidence_cells(
    s: np.ndarray,
    indptr: np.ndarray,
    idx: np.ndarray,
    pos: np.ndarray,
    n_pos: np.ndarray,
    n_neg: np.ndarray,
    max_pos: np.ndarray,
    max_neg: np.ndarray,
) -> None:  # pragma: no cover - compiled; tested against the NumPy path
    """Per query row ``q`` of ``s`` and gene ``g`` (observations ``indptr[g]:indptr[g + 1]``: pool
    perturbation ``idx[k]``, positive ``pos[k]``), the counts of related (similarity > 0 after rounding to
    float32) positive / negative observations and the largest similarities of each kind (0 when none)."""
    n_genes = indptr.shape[0] - 1
    for q in range(s.shape[0]):
        for g in range(n_genes):
            lo = indptr[g]
            hi = indptr[g + 1]
            if lo == hi:
                continue
            cp = 0
            cn = 0
            mp = np.float32(0.0)
            mn = np.float32(0.0)
            for k in range(lo, hi):
                v = np.float32(s[q, idx[k]])
                if pos[k]:
                    vp = v
                    vn = np.float32(0.0)
                    if v > 0:
                        cp += 1
                else:
                    vp = np.float32(0.0)
                    vn = v
                    if v > 0:
                        cn += 1
                if k == lo:
                    mp = vp
                    mn = vn
                else:
                    mp = max(mp, vp)
                    mn = max(mn, vn)
            n_pos[q, g] = cp
            n_neg[q, g] = cn
            max_pos[q, g] = mp
            max_neg[q, g] = mn
