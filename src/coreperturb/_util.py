"""Small shared helpers."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(p, eps, 1 - eps)
    return np.asarray(np.log(p / (1 - p)))


def positions(index: pd.Index, values: Iterable[object]) -> np.ndarray:
    """Positions of ``values`` in ``index`` (-1 where absent); ``index`` must be unique."""
    return np.asarray(
        index.get_indexer(pd.Index(list(values) if not isinstance(values, pd.Index) else values))
    )


def gather_rows(mat: sp.csr_matrix, idx: np.ndarray) -> sp.csr_matrix:
    """Rows ``idx`` of ``mat``; a negative index gives an empty row."""
    if mat.shape[0] == 0:
        return sp.csr_matrix((len(idx), mat.shape[1]), dtype=mat.dtype)
    safe = np.where(idx >= 0, idx, 0)
    out = sp.csr_matrix(mat[safe])
    if (idx < 0).any():
        mask = sp.diags((idx >= 0).astype(np.float64))
        out = sp.csr_matrix(mask @ out)
        out.eliminate_zeros()
    return out
