"""Fitted combiners and calibrators as plain arrays, scored without scikit-learn.

A fitted model's scikit-learn estimators are a binary
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` (CORE-Voting's combiner), a
:class:`~sklearn.linear_model.LogisticRegression` (the calibrators, the gene-frequency logistic) or a
standard scaler followed by one (the logistic combiner). Each is kept here as the arrays that define it:
a model file stores them with ``numpy.savez`` (no pickle), and predicting from a saved model then needs
neither scikit-learn nor skops, whose imports cost more than a one-pair prediction (about 1.9 s).

The probabilities are those of ``predict_proba``, bit for bit: the trees are walked with scikit-learn's
rule (``x <= threshold`` goes left, NaN goes where the split sent missing values) and the leaf values are
added to the baseline in tree order; a linear model computes ``x @ coef.T + intercept`` with the same
NumPy product; both map raw scores with ``scipy.special.expit``, as scikit-learn does. The tests compare
them with scikit-learn on fitted models (the oracle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

FOREST = "hist_gradient_boosting"
LINEAR = "logistic"
KINDS = (FOREST, LINEAR)


SMALL_EXPIT = 64
"""Inputs up to this size are mapped with :func:`math.exp` (the C library's ``exp``, as
``scipy.special.expit`` uses it) instead of importing ``scipy.special`` (about 0.1 s at start-up)."""


def _expit_small(values: np.ndarray) -> np.ndarray:
    out = np.empty(values.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, v in enumerate(values.reshape(-1).tolist()):
        try:
            flat[i] = 1.0 / (1.0 + math.exp(-v))
        except OverflowError:  # exp(-v) > DBL_MAX: scipy's 1 / (1 + inf)
            flat[i] = 0.0
    return out


def expit(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` as scikit-learn computes it (``scipy.special.expit``; NumPy's ``exp`` differs
    in the last bit for about 2% of values). A few values are mapped with :func:`math.exp`, bit for bit the
    same (``tests/predictors/test_portable.py`` compares them with scipy)."""
    values = np.asarray(x)
    if values.dtype == np.float64 and values.size <= SMALL_EXPIT:
        return _expit_small(values)
    from scipy import special

    return np.asarray(special.expit(x), dtype=np.float64)


def _proba(p1: np.ndarray) -> np.ndarray:
    """``predict_proba``'s two columns from P(class 1)."""
    return np.stack([1 - p1, p1], axis=1)


@dataclass(frozen=True, eq=False)
class ForestArrays:
    """The trees of a fitted binary HistGradientBoostingClassifier: node arrays of all trees, one after
    another (``left`` / ``right`` index the concatenated arrays; ``roots`` holds each tree's first node).

    Attributes:
        feature: Split feature of each node.
        threshold: Split threshold (a value ``<=`` it goes left).
        missing_left: Where a NaN goes at the node.
        left: Left child. ``right``: right child.
        is_leaf: Whether the node is a leaf; ``value``: its value (leaves).
        roots: First node of each tree.
        baseline: The model's baseline raw score.
        n_features_in_: Features the model was fitted on.
    """

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    baseline: float
    n_features_in_: int

    @classmethod
    def from_sklearn(cls, model: Any) -> ForestArrays | None:
        """The arrays of a fitted binary HistGradientBoostingClassifier without categorical splits; ``None``
        for any other estimator."""
        if type(model).__name__ != "HistGradientBoostingClassifier":
            return None
        predictors = getattr(model, "_predictors", None)
        baseline = np.asarray(getattr(model, "_baseline_prediction", np.nan), dtype=np.float64).ravel()
        if (
            not predictors
            or getattr(model, "n_trees_per_iteration_", 0) != 1
            or getattr(model, "is_categorical_", None) is not None
            or baseline.size != 1
            or len(getattr(model, "classes_", ())) != 2
        ):
            return None
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("f", "t", "m", "l", "r", "leaf", "v")}
        roots, offset = [], 0
        for (predictor,) in predictors:
            nodes = predictor.nodes
            if bool(np.any(nodes["is_categorical"])):
                return None
            roots.append(offset)
            parts["f"].append(nodes["feature_idx"].astype(np.int64))
            parts["t"].append(nodes["num_threshold"].astype(np.float64))
            parts["m"].append(nodes["missing_go_to_left"].astype(bool))
            parts["l"].append(nodes["left"].astype(np.int64) + offset)
            parts["r"].append(nodes["right"].astype(np.int64) + offset)
            parts["leaf"].append(nodes["is_leaf"].astype(bool))
            parts["v"].append(nodes["value"].astype(np.float64))
            offset += len(nodes)
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        return cls(
            feature=cat["f"], threshold=cat["t"], missing_left=cat["m"], left=cat["l"], right=cat["r"],
            is_leaf=cat["leaf"], value=cat["v"], roots=np.asarray(roots, dtype=np.int64),
            baseline=float(baseline[0]), n_features_in_=int(model.n_features_in_),
        )  # fmt: skip

    @property
    def n_trees(self) -> int:
        """Trees in the model."""
        return len(self.roots)

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf each row of ``x`` reaches in each tree (``rows × trees`` node indices)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} feature columns, got shape {x.shape}")
        node = np.broadcast_to(self.roots, (len(x), self.n_trees)).copy()
        rows = np.arange(len(x))[:, None]
        while True:
            inner = ~self.is_leaf[node]
            if not inner.any():
                return node
            val = x[rows, self.feature[node]]
            go_left = np.where(np.isnan(val), self.missing_left[node], val <= self.threshold[node])
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw scores: the baseline plus each tree's leaf value, added in tree order (float64)."""
        vals = self.value[self.leaves(x)]
        start = np.full((len(vals), 1), self.baseline, dtype=np.float64)
        # a cumulative sum adds left to right, one tree at a time, as scikit-learn's loop over trees does
        return np.cumsum(np.concatenate([start, vals], axis=1), axis=1)[:, -1]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``predict_proba`` of the model (two columns)."""
        return _proba(expit(self.raw(x)))

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything that defines the model, as arrays (for ``numpy.savez``)."""
        return {
            "feature": self.feature, "threshold": self.threshold, "missing_left": self.missing_left,
            "left": self.left, "right": self.right, "is_leaf": self.is_leaf, "value": self.value,
            "roots": self.roots, "baseline": np.asarray([self.baseline]),
            "n_features_in": np.asarray([self.n_features_in_]),
        }  # fmt: skip

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> ForestArrays:
        """Inverse of :meth:`arrays`; checks that every index stays inside the arrays.

        Raises:
            ValueError: Missing arrays, or arrays that do not form trees.
        """
        n = len(a["feature"])
        f = cls(
            feature=np.asarray(a["feature"], dtype=np.int64),
            threshold=np.asarray(a["threshold"], dtype=np.float64),
            missing_left=np.asarray(a["missing_left"], dtype=bool),
            left=np.asarray(a["left"], dtype=np.int64),
            right=np.asarray(a["right"], dtype=np.int64),
            is_leaf=np.asarray(a["is_leaf"], dtype=bool),
            value=np.asarray(a["value"], dtype=np.float64),
            roots=np.asarray(a["roots"], dtype=np.int64),
            baseline=float(np.asarray(a["baseline"]).ravel()[0]),
            n_features_in_=int(np.asarray(a["n_features_in"]).ravel()[0]),
        )
        arrays = (f.threshold, f.missing_left, f.left, f.right, f.is_leaf, f.value)
        if any(len(v) != n for v in arrays) or not len(f.roots):
            raise ValueError("tree arrays of different lengths")
        inner = ~f.is_leaf
        for idx in (f.left[inner], f.right[inner], f.roots):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise ValueError("a tree node points outside the arrays")
        # children come after their parent, so every walk ends at a leaf
        where = np.flatnonzero(inner)
        if np.any(f.left[inner] <= where) or np.any(f.right[inner] <= where):
            raise ValueError("a tree node points back to an earlier node")
        ok = f.feature[inner]
        if len(ok) and (ok.min() < 0 or ok.max() >= f.n_features_in_):
            raise ValueError("a split on a feature the model does not have")
        return f


@dataclass(frozen=True, eq=False)
class LinearArrays:
    """A fitted binary LogisticRegression, optionally after a StandardScaler (``mean`` / ``scale`` empty
    without one).

    Attributes:
        coef: ``coef_`` (``1 × n_features``). ``intercept``: ``intercept_`` (length 1).
        mean: The scaler's ``mean_``; ``scale``: its ``scale_``.
    """

    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @property
    def n_features_in_(self) -> int:
        """Features the model was fitted on."""
        return int(self.coef.shape[1])

    @classmethod
    def from_sklearn(cls, model: Any) -> LinearArrays | None:
        """The arrays of a fitted binary LogisticRegression, or a pipeline of a StandardScaler (with mean
        and scale) and one; ``None`` for any other estimator."""
        mean = scale = np.empty(0, dtype=np.float64)
        steps = getattr(model, "steps", None)
        if steps is not None:
            if len(steps) != 2 or type(steps[0][1]).__name__ != "StandardScaler":
                return None
            scaler, model = steps[0][1], steps[1][1]
            if not (scaler.with_mean and scaler.with_std) or scaler.mean_ is None or scaler.scale_ is None:
                return None
            mean, scale = np.asarray(scaler.mean_, np.float64), np.asarray(scaler.scale_, np.float64)
        if type(model).__name__ != "LogisticRegression" or len(getattr(model, "classes_", ())) != 2:
            return None
        coef = np.asarray(model.coef_, dtype=np.float64)
        if coef.ndim != 2 or coef.shape[0] != 1:
            return None
        return cls(coef, np.asarray(model.intercept_, dtype=np.float64).ravel(), mean, scale)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``predict_proba`` of the model (two columns)."""
        x = np.array(x, dtype=np.float64)  # a copy, as the scaler makes
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} feature columns, got shape {x.shape}")
        if len(self.mean):
            x -= self.mean
            x /= self.scale
        scores = x @ self.coef.T + self.intercept
        return _proba(expit(scores.reshape(-1)))

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything that defines the model, as arrays (for ``numpy.savez``)."""
        return {"coef": self.coef, "intercept": self.intercept, "mean": self.mean, "scale": self.scale}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> LinearArrays:
        """Inverse of :meth:`arrays`.

        Raises:
            ValueError: Arrays of inconsistent shapes.
        """
        coef = np.asarray(a["coef"], dtype=np.float64)
        out = cls(
            coef,
            np.asarray(a["intercept"], dtype=np.float64).ravel(),
            np.asarray(a["mean"], dtype=np.float64).ravel(),
            np.asarray(a["scale"], dtype=np.float64).ravel(),
        )
        nf = coef.shape[1] if coef.ndim == 2 else -1
        if coef.ndim != 2 or coef.shape[0] != 1 or len(out.intercept) != 1:
            raise ValueError(f"coef of shape {coef.shape} / intercept of {len(out.intercept)} values")
        if len(out.mean) not in (0, nf) or len(out.scale) != len(out.mean):
            raise ValueError("scaler arrays of another length than the coefficients")
        return out


Portable = ForestArrays | LinearArrays


def to_portable(estimator: Any) -> tuple[str, Portable] | None:
    """``(kind, arrays)`` of a fitted estimator these arrays can hold (a portable one is returned as it is);
    ``None`` for any other (it is saved with skops)."""
    if isinstance(estimator, ForestArrays):
        return FOREST, estimator
    if isinstance(estimator, LinearArrays):
        return LINEAR, estimator
    forest = ForestArrays.from_sklearn(estimator)
    if forest is not None:
        return FOREST, forest
    linear = LinearArrays.from_sklearn(estimator)
    if linear is not None:
        return LINEAR, linear
    return None


def from_portable(kind: str, arrays: dict[str, np.ndarray]) -> Portable:
    """The estimator of :func:`to_portable`'s ``kind`` from its arrays.

    Raises:
        ValueError: An unknown kind, or arrays that do not define such a model.
    """
    if kind == FOREST:
        return ForestArrays.from_arrays(arrays)
    if kind == LINEAR:
        return LinearArrays.from_arrays(arrays)
    raise ValueError(f"unknown estimator kind {kind!r} (known: {', '.join(KINDS)})")


__all__ = [
    "FOREST",
    "KINDS",
    "LINEAR",
    "ForestArrays",
    "LinearArrays",
    "expit",
    "from_portable",
    "to_portable",
]
