"""Small shared helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

Progress = Callable[[int, int], None]
"""A progress callback: ``(done, total)``, called as work completes (LLM calls, chunks)."""


def split_names(value: Any) -> tuple[str, ...] | None:
    """``"a,b"`` or ``["a", "b"]`` → ``("a", "b")``; ``None`` / empty stays ``None``."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    out = tuple(v.strip() for v in items if str(v).strip())
    return out or None


def nanmean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Row-wise mean over the arrays that are finite there (NaN where none is)."""
    x = np.vstack([np.asarray(a, dtype=np.float64) for a in arrays])
    ok = np.isfinite(x)
    n = ok.sum(axis=0)
    return np.where(n > 0, np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(p, eps, 1 - eps)
    return np.asarray(np.log(p / (1 - p)))


def positions(index: pd.Index, values: Iterable[object]) -> np.ndarray:
    """Positions of ``values`` in ``index`` (-1 where absent); ``index`` must be unique."""
    return np.asarray(
        index.get_indexer(pd.Index(list(values) if not isinstance(values, pd.Index) else values))
    )


def l2_normalize_rows(x: sp.spmatrix, *, copy: bool = True) -> sp.csr_matrix:
    """Rows of a sparse matrix scaled to unit L2 norm (empty rows stay empty), without scikit-learn.

    The same numbers, bit for bit, as ``sklearn.preprocessing.normalize(x, norm="l2", axis=1)`` (whose
    import costs more than a one-pair prediction): per row, the squares (in the data's dtype) are summed
    in float64 in storage order, and each value is divided by the square root of that sum in float64.
    The tests compare it with scikit-learn.
    """
    out = sp.csr_matrix(x, copy=copy)
    if out.dtype not in (np.float32, np.float64):
        out = out.astype(np.float64)
    data = out.data
    # a CSR product with a vector of ones sums each row in storage order, in float64, as the Cython loop does
    squares = sp.csr_matrix(
        (np.asarray(data * data, dtype=np.float64), out.indices, out.indptr), shape=out.shape
    )
    norms = np.sqrt(squares @ np.ones(out.shape[1], dtype=np.float64))
    norms[norms == 0.0] = 1.0  # an empty row is left as it is
    per_value = np.repeat(norms, np.diff(out.indptr))
    out.data = np.asarray(data.astype(np.float64) / per_value, dtype=data.dtype)
    return out


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
