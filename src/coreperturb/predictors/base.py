"""Predictor interface (scikit-learn style) and the registry of predictors by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from coreperturb.graph.kg import KnowledgeGraph
from coreperturb.registry import Registry


@dataclass(frozen=True)
class FittedState:
    """What a fitted predictor needs besides its KG and training rows to predict again (see model files).

    Attributes:
        params: Constructor parameters (JSON-safe).
        attrs: Fitted scalars and lists (JSON-safe): thresholds, chosen settings, feature names.
        estimators: Fitted scikit-learn estimators by attribute name (saved with ``skops.io``).
    """

    params: dict[str, Any]
    attrs: dict[str, Any] = field(default_factory=dict)
    estimators: dict[str, Any] = field(default_factory=dict)


class Predictor(ABC):
    """Predicts P(label = 1) for (perturbation, gene) queries of one cell line and task.

    Subclasses implement :meth:`fit` on a training frame (columns perturbation, gene, label) and
    :meth:`predict_proba` returning an ``(n, 2)`` array like scikit-learn classifiers. After ``fit``,
    ``threshold_`` holds the decision threshold chosen on training data (out-of-fold where the method
    learns anything), used for F1 / accuracy / predicted-positive rate.
    """

    name: str = "predictor"
    threshold_: float = 0.5

    @abstractmethod
    def fit(self, train: pd.DataFrame) -> Predictor:
        """Fit on training rows."""

    @abstractmethod
    def predict_proba(self, queries: pd.DataFrame) -> np.ndarray:
        """Return ``(n, 2)`` probabilities of label 0 and 1."""

    def predict(self, queries: pd.DataFrame) -> np.ndarray:
        """Hard 0/1 predictions at ``threshold_``."""
        return (self.predict_proba(queries)[:, 1] >= self.threshold_).astype(np.int8)

    def fitted_state(self) -> FittedState:
        """The fitted state to save (see :mod:`coreperturb.model_files`)."""
        raise NotImplementedError(f"{self.name} cannot be saved to a model file")

    @classmethod
    def from_fitted_state(
        cls,
        kg: KnowledgeGraph,
        state: FittedState,
        train: pd.DataFrame,
        context: pd.DataFrame | None = None,
    ) -> Predictor:
        """Rebuild a fitted predictor from :meth:`fitted_state`, its KG and its training rows."""
        raise NotImplementedError(f"{cls.name} cannot be loaded from a model file")


PredictorFactory = Callable[..., Predictor]
PREDICTORS: Registry[PredictorFactory] = Registry("predictor")


def make_predictor(name: str, kg: KnowledgeGraph, **params: object) -> Predictor:
    """Instantiate the predictor registered as ``name`` with the knowledge graph."""
    return PREDICTORS.get(name)(kg=kg, **params)


def perturbation_folds(perturbations: pd.Series, n_folds: int, seed: int) -> np.ndarray:
    """Fold id per row, assigning whole perturbations to folds (unseen-perturbation cross-fitting)."""
    uniq = np.asarray(sorted(pd.unique(perturbations.astype(str))))
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(uniq, rng.permutation(len(uniq)) % n_folds, strict=True))
    return perturbations.astype(str).map(fold_of).to_numpy(dtype=np.int64)


def cross_fit(
    train: pd.DataFrame, n_folds: int, seed: int, fn: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Out-of-fold features: ``fn(query_rows, pool_rows)`` for each fold of perturbations.

    Returns:
        Features aligned with ``train`` rows and the fold id of each row.
    """
    folds = perturbation_folds(train["perturbation"], n_folds, seed)
    parts: list[pd.DataFrame] = []
    for k in range(n_folds):
        q = train.loc[folds == k]
        if q.empty:
            continue
        f = fn(q, train.loc[folds != k])
        f.index = q.index
        parts.append(f)
    return pd.concat(parts).loc[train.index], folds


def iter_fold_masks(folds: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train_mask, holdout_mask) per fold id."""
    for k in np.unique(folds):
        yield folds != k, folds == k
