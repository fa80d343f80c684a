"""Compiled scoring of a fitted gradient-boosting combiner (numba), bit-identical to ``predict_proba``.

scikit-learn scores a :class:`~sklearn.ensemble.HistGradientBoostingClassifier` one tree at a time over all
rows (226 + 300 passes over a genome-wide chunk of a K562 model, each walking a tree with data-dependent
branches). :class:`CompiledForest` lays the fitted trees out for the QuickScorer kernels of
:mod:`coreperturb.predictors._tree_kernel`: each row visits only the splits its features fail, per feature
in threshold order, with no branch to mispredict, and on a perturbation × gene grid the splits on features
that are constant per perturbation (e.g. ``strength_*``) or per gene (``base``, ``log_obs``) are visited
once per perturbation / gene instead of once per pair (half the splits of the K562 models). The kernels
release the GIL and run over row blocks in a thread pool of the allotted size.

The result is bit-identical to ``predict_proba``: a split sends ``x <= num_threshold`` left, as
scikit-learn's own predictor does; the raw score is the baseline plus the reached leaves' values added in
tree order (the same float64 sums in the same order); the probability comes from the model's own loss.
Tests compare it with ``predict_proba`` (the oracle). Inputs with NaN, and models the layout does not cover
(categorical splits, more than 64 leaves a tree, several trees per iteration), are scored by scikit-learn.

numba ships as a wheel with its own LLVM (no compiler on the user's machine; ~40 MB download). Where it
cannot be imported, or with ``$COREPERTURB_TREES=sklearn``, scoring falls back to scikit-learn's binned
path; the numbers are the same either way.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from coreperturb._threads import effective_threads
from coreperturb.predictors._portable import ForestArrays, LinearArrays, expit

log = logging.getLogger(__name__)

ENGINE_ENV = "COREPERTURB_TREES"
"""``sklearn`` forces scikit-learn's scoring path (for comparison); anything else / unset = compiled."""

_KERNEL: Any = None
_KERNEL_ERROR: str | None = None


def _kernels() -> Any:
    """The numba kernels module, compiled on first use (``None`` when numba is missing)."""
    global _KERNEL, _KERNEL_ERROR
    if _KERNEL is not None or _KERNEL_ERROR is not None:
        return _KERNEL
    try:
        from coreperturb.predictors import _tree_kernel
    except ImportError as exc:  # pragma: no cover - numba is a dependency; kept for odd platforms
        _KERNEL_ERROR = f"numba is not importable ({exc}); scoring trees with scikit-learn"
        log.info(_KERNEL_ERROR)
        return None
    _KERNEL = _tree_kernel
    return _KERNEL


def engine() -> str:
    """``numba`` when trees are scored by the compiled kernels, else ``sklearn``."""
    if os.environ.get(ENGINE_ENV, "").strip().lower() == "sklearn":
        return "sklearn"
    return "numba" if _kernels() is not None else "sklearn"


MAX_LEAVES = 64
"""Leaves per tree the compiled path covers (one 64-bit word per tree)."""


@dataclass(frozen=True, eq=False)
class CompiledForest:
    """The fitted trees of a binary :class:`~sklearn.ensemble.HistGradientBoostingClassifier`, laid out for
    the kernels of :mod:`coreperturb.predictors._tree_kernel`.

    Attributes:
        start: Splits of feature ``f`` are ``start[f]:start[f + 1]`` of the split arrays (by threshold).
        threshold: Split threshold (a row goes left when ``x <= threshold``).
        tree: The tree of each split.
        mask: All bits set but those of the leaves in the split's left subtree.
        leaf_value: Leaf values, tree by tree, leaves left to right; ``leaf_start``: each tree's first.
        baseline: The model's baseline raw prediction.
        n_features: Features the model was fitted on.
    """

    start: np.ndarray
    threshold: np.ndarray
    tree: np.ndarray
    mask: np.ndarray
    leaf_value: np.ndarray
    leaf_start: np.ndarray
    baseline: float
    n_features: int

    @property
    def n_trees(self) -> int:
        """Trees in the model."""
        return len(self.leaf_start)

    @classmethod
    def from_model(cls, model: Any) -> CompiledForest | None:
        """Lay out a fitted binary HistGradientBoostingClassifier (or its :class:`ForestArrays`); ``None``
        for a model it does not cover (categorical splits, several trees per iteration, more than
        :data:`MAX_LEAVES` leaves a tree)."""
        forest = model if isinstance(model, ForestArrays) else ForestArrays.from_sklearn(model)
        if forest is None:
            return None
        feature: list[int] = []
        threshold: list[float] = []
        tree: list[int] = []
        mask: list[int] = []
        leaf_value: list[float] = []
        leaf_start: list[int] = []
        is_leaf, left, right = forest.is_leaf, forest.left, forest.right
        for t, root in enumerate(forest.roots):
            # leaves left to right, and for every split the range of leaves under its left child
            first: dict[int, int] = {}
            last: dict[int, int] = {}
            leaves: list[int] = []
            inner: list[int] = []
            stack: list[tuple[int, bool]] = [(int(root), False)]
            while stack:
                n, done = stack.pop()
                if is_leaf[n]:
                    first[n] = last[n] = len(leaves)
                    leaves.append(n)
                elif done:
                    first[n] = first[int(left[n])]
                    last[n] = last[int(right[n])]
                else:
                    inner.append(n)
                    stack += [(n, True), (int(right[n]), False), (int(left[n]), False)]
            if len(leaves) > MAX_LEAVES:
                return None
            leaf_start.append(len(leaf_value))
            leaf_value += [float(forest.value[n]) for n in leaves]
            for n in sorted(inner):  # node order, as the splits were listed before
                lo, hi = first[int(left[n])], last[int(left[n])]
                cleared = sum(1 << j for j in range(lo, hi + 1))
                feature.append(int(forest.feature[n]))
                threshold.append(float(forest.threshold[n]))
                tree.append(t)
                mask.append(~cleared & 0xFFFFFFFFFFFFFFFF)
        feature_a = np.asarray(feature, dtype=np.int64)
        threshold_a = np.asarray(threshold, dtype=np.float64)
        order = np.lexsort((threshold_a, feature_a))
        n_features = forest.n_features_in_
        return cls(
            start=np.searchsorted(feature_a[order], np.arange(n_features + 1)).astype(np.int64),
            threshold=threshold_a[order],
            tree=np.asarray(tree, dtype=np.int64)[order],
            mask=np.asarray(mask, dtype=np.uint64)[order],
            leaf_value=np.asarray(leaf_value, dtype=np.float64),
            leaf_start=np.asarray(leaf_start, dtype=np.int64),
            baseline=forest.baseline,
            n_features=n_features,
        )

    def _split_args(self) -> tuple[np.ndarray, ...]:
        return (self.start, self.threshold, self.tree, self.mask)

    def bits(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Per row of ``rows`` (``n × n_features``) and tree, the leaves still reachable after the splits on
        features ``cols`` (uint64 words, ``n × n_trees``)."""
        k = _kernels()
        out = np.full((len(rows), self.n_trees), k.ONES, dtype=np.uint64)
        k.clear_bits(
            np.ascontiguousarray(rows, dtype=np.float64), cols.astype(np.int64), *self._split_args(), out
        )
        return out

    def raw(
        self,
        x: np.ndarray,
        threads: int = 1,
        grid: tuple[int, int] | None = None,
        block_rows: int = 16_384,
    ) -> np.ndarray:
        """Raw scores (baseline + leaf values, float64) of the rows of ``x`` (``rows × n_features``, no NaN).

        Args:
            x: Features.
            threads: Threads scoring row blocks at once.
            grid: ``(n_perturbations, n_genes)`` when the rows are a perturbation-major grid: features that
                are constant per perturbation or per gene are then scored once per perturbation / gene.
            block_rows: Rows copied to row-major order and scored per task.
        """
        k = _kernels()
        if k is None:  # pragma: no cover - see module docstring
            raise RuntimeError(_KERNEL_ERROR or "numba is not available")
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} feature columns, got shape {x.shape}")
        n = len(x)
        ones = np.full((1, self.n_trees), k.ONES, dtype=np.uint64)
        bits_a, bits_b = ones, ones
        ia = ib = np.zeros(n, dtype=np.int64)
        scan = np.arange(self.n_features, dtype=np.int64)
        if grid is not None and n and grid[0] * grid[1] == n:
            n_p, n_g = grid
            per_p, per_g = _grid_columns(x, n_p, n_g)
            if len(per_p):
                bits_a = self.bits(x[::n_g], per_p)
                ia = np.repeat(np.arange(n_p, dtype=np.int64), n_g)
            if len(per_g):
                bits_b = self.bits(x[:n_g], per_g)
                ib = np.tile(np.arange(n_g, dtype=np.int64), n_p)
            scan = np.setdiff1d(scan, np.concatenate([per_p, per_g])).astype(np.int64)
        out = np.empty(n, dtype=np.float64)

        def block(lo: int) -> None:
            hi = min(lo + block_rows, n)
            rows = np.ascontiguousarray(x[lo:hi], dtype=np.float64)
            k.leaf_sums(
                rows, scan, *self._split_args(), bits_a, ia[lo:hi], bits_b, ib[lo:hi],
                self.leaf_value, self.leaf_start, self.baseline, k.DE_BRUIJN_INDEX, out[lo:hi],
            )  # fmt: skip

        starts = range(0, n, block_rows)
        if threads > 1 and len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(threads, len(starts))) as pool:  # the kernel releases the GIL
                list(pool.map(block, starts))
        else:
            for lo in starts:
                block(lo)
        return out


def _grid_columns(x: np.ndarray, n_p: int, n_g: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of a perturbation-major grid that are constant within every perturbation, and those (of
    the rest) that repeat the same per-gene values for every perturbation."""
    per_p, per_g = [], []
    for j in range(x.shape[1]):
        col = x[:, j].reshape(n_p, n_g)
        if n_g > 1 and bool((col == col[:, :1]).all()):
            per_p.append(j)
        elif n_p > 1 and bool((col == col[:1]).all()):
            per_g.append(j)
    return np.asarray(per_p, dtype=np.int64), np.asarray(per_g, dtype=np.int64)


_FORESTS: weakref.WeakKeyDictionary[Any, CompiledForest | None] = weakref.WeakKeyDictionary()
_FORESTS_LOCK = threading.Lock()


SMALL_ROWS = 2_048
"""Below this many rows :func:`combiner_proba` does not use the compiled kernels (bit-identical either way)."""
SMALL_ROWS_NUMBA_LOADED = 256
"""The same for the arrays of a saved model once numba is loaded (their NumPy walk is slower than sklearn's)."""


def compiled_forest(model: Any) -> CompiledForest | None:
    """The :class:`CompiledForest` of a fitted model (built once per model object; ``None`` when the
    compiled path is off, unavailable or does not cover the model)."""
    if engine() != "numba":
        return None
    with _FORESTS_LOCK:
        try:
            return _FORESTS[model]
        except KeyError:
            pass
        except TypeError:  # pragma: no cover - an estimator that cannot be weakly referenced
            return CompiledForest.from_model(model)
        forest = CompiledForest.from_model(model)
        _FORESTS[model] = forest
        return forest


def combiner_proba(
    model: Any, x: np.ndarray, block_rows: int = 65_536, grid: tuple[int, int] | None = None
) -> np.ndarray:
    """P(class 1) of a fitted combiner.

    A binary :class:`~sklearn.ensemble.HistGradientBoostingClassifier` is scored by the compiled kernels
    of :mod:`coreperturb.predictors._compiled` (bit-identical to ``predict_proba``; ``grid`` = ``(n_perts,
    n_genes)`` of a perturbation-major grid lets them score per-perturbation and per-gene features once).
    Without them (no numba, ``$COREPERTURB_TREES=sklearn``, NaN features), such a model is scored on binned
    features: its bin mapper puts ``x`` in the first bin whose upper threshold is ``>= x``, so ``x <=
    threshold`` at a node exactly when ``bin(x) <= bin threshold``: the same leaves, the same sums in the
    same order, and so bit-identical probabilities, from one byte per feature instead of eight. Large inputs
    are cut into blocks of ``block_rows`` rows scored by one thread each (as many threads as the OpenMP
    allotment), which avoids a thread barrier per tree. Any other estimator, or a scikit-learn whose
    internals differ, uses ``predict_proba``.
    """
    # a few rows (one pair, an explanation) are scored without the compiled kernels: the same numbers,
    # without paying ~0.5 s to import numba and load them (unless something loaded numba already)
    portable = isinstance(model, ForestArrays)
    small = SMALL_ROWS if not (portable and "numba" in sys.modules) else SMALL_ROWS_NUMBA_LOADED
    forest = compiled_forest(model) if len(x) >= small else None
    if forest is not None and x.ndim == 2 and x.shape[1] == forest.n_features and not np.isnan(x).any():
        raw = forest.raw(np.asarray(x, dtype=np.float64), effective_threads(), grid=grid)
        if portable:
            return expit(raw)
        return np.asarray(model._loss.predict_proba(raw.reshape(-1, 1))[:, 1], dtype=np.float64)
    if portable or isinstance(model, LinearArrays):
        return np.asarray(model.predict_proba(x)[:, 1], dtype=np.float64)
    from sklearn.ensemble import HistGradientBoostingClassifier

    if isinstance(model, HistGradientBoostingClassifier) and getattr(model, "n_trees_per_iteration_", 0) == 1:
        try:
            if getattr(model, "is_categorical_", None) is None:
                xv = model._preprocess_X(x, reset=False)
                binned = model._bin_mapper.transform(xv)
                n_threads = effective_threads()

                def score(block: np.ndarray, threads: int) -> np.ndarray:
                    raw = np.zeros((len(block), 1), dtype=model._baseline_prediction.dtype, order="F")
                    raw += model._baseline_prediction
                    model._predict_iterations(np.asfortranarray(block), model._predictors, raw, True, threads)  # noqa: FBT003 (scikit-learn private signature)
                    return raw

                if n_threads > 1 and len(binned) > block_rows:
                    from concurrent.futures import ThreadPoolExecutor

                    blocks = [binned[lo : lo + block_rows] for lo in range(0, len(binned), block_rows)]
                    with ThreadPoolExecutor(n_threads) as pool:  # the tree loops release the GIL
                        raw = np.concatenate(list(pool.map(lambda b: score(b, 1), blocks)))
                else:
                    raw = score(binned, n_threads)
                return np.asarray(model._loss.predict_proba(raw)[:, 1], dtype=np.float64)
        except (AttributeError, ImportError, TypeError):  # pragma: no cover - other scikit-learn internals
            pass
    return np.asarray(model.predict_proba(x)[:, 1], dtype=np.float64)


__all__ = ["ENGINE_ENV", "CompiledForest", "combiner_proba", "compiled_forest", "engine"]
