"""numba kernels of :mod:`coreperturb.predictors._compiled` (imported lazily: numba loads in ~0.3 s).

The trees are scored the QuickScorer way (Lucchese et al., SIGIR 2015): every tree keeps a bit per leaf
(leaves numbered left to right); a split whose test fails (``x > threshold``: the row goes right) clears
the bits of the leaves in its left subtree; the leaf a row reaches is then the lowest bit still set. Per
feature, the splits are sorted by threshold, so a row visits exactly the failing splits, in a loop with no
data-dependent branch but its exit. Which bits are cleared does not depend on the order of the clearing,
so bit vectors of features that are constant per perturbation or per gene are computed once per
perturbation / gene and combined with ``&``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
# index of the lowest set bit b from ((b ^ (b - 1)) * DE_BRUIJN) >> 58
DE_BRUIJN_INDEX = np.array(
    [0, 47, 1, 56, 48, 27, 2, 60, 57, 49, 41, 37, 28, 16, 3, 61, 54, 58, 35, 52, 50, 42, 21, 44, 38, 32, 29,
     23, 17, 11, 4, 62, 46, 55, 26, 59, 40, 36, 15, 53, 34, 51, 20, 43, 31, 22, 10, 45, 25, 39, 14, 33, 19,
     30, 9, 24, 13, 18, 8, 12, 7, 6, 5, 63],
    dtype=np.int64,
)  # fmt: skip


@njit(nogil=True, cache=True, inline="always")
def _clear_row(
    x: np.ndarray,
    i: int,
    cols: np.ndarray,
    start: np.ndarray,
    threshold: np.ndarray,
    tree: np.ndarray,
    mask: np.ndarray,
    bits: np.ndarray,
) -> None:  # pragma: no cover - compiled; inlined into the kernels below
    """Clear, in ``bits`` (one word per tree), the leaves that row ``i`` of ``x`` cannot reach through the
    splits on features ``cols``. Splits of feature ``f``: ``start[f]:start[f + 1]``, by threshold; a row
    visits only those it fails (``threshold < x``)."""
    for c in range(cols.shape[0]):
        f = cols[c]
        v = x[i, f]
        k = start[f]
        end = start[f + 1]
        while k < end and threshold[k] < v:
            bits[tree[k]] &= mask[k]
            k += 1


@njit(nogil=True, cache=True)
def clear_bits(
    x: np.ndarray,
    cols: np.ndarray,
    start: np.ndarray,
    threshold: np.ndarray,
    tree: np.ndarray,
    mask: np.ndarray,
    bits: np.ndarray,
) -> None:  # pragma: no cover - compiled; tested through CompiledForest against predict_proba
    """:func:`_clear_row` for every row ``i`` of ``x``, into ``bits[i]``."""
    for i in range(x.shape[0]):
        _clear_row(x, i, cols, start, threshold, tree, mask, bits[i])


@njit(nogil=True, cache=True)
def leaf_sums(
    x: np.ndarray,
    cols: np.ndarray,
    start: np.ndarray,
    threshold: np.ndarray,
    tree: np.ndarray,
    mask: np.ndarray,
    bits_a: np.ndarray,
    ia: np.ndarray,
    bits_b: np.ndarray,
    ib: np.ndarray,
    leaf_value: np.ndarray,
    leaf_start: np.ndarray,
    baseline: float,
    table: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled; tested through CompiledForest against predict_proba
    """``out[i]`` = baseline + the value of the leaf each tree gives row ``i``, added in tree order.

    A row starts from ``bits_a[ia[i]] & bits_b[ib[i]]`` (the bits its constant features leave) and clears
    more through the splits on ``cols``."""
    n_trees = leaf_start.shape[0]
    bits = np.empty(n_trees, dtype=np.uint64)
    one = np.uint64(1)
    shift = np.uint64(58)
    for i in range(x.shape[0]):
        a = ia[i]
        b = ib[i]
        for t in range(n_trees):
            bits[t] = bits_a[a, t] & bits_b[b, t]
        _clear_row(x, i, cols, start, threshold, tree, mask, bits)
        acc = baseline
        for t in range(n_trees):
            w = bits[t]
            acc += leaf_value[leaf_start[t] + table[((w ^ (w - one)) * DE_BRUIJN) >> shift]]
        out[i] = acc
