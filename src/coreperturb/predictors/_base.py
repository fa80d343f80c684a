"""Predictor interface (scikit-learn style) and the registry of predictors by name."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from coreperturb._registry import Registry
from coreperturb._threads import retune
from coreperturb.errors import DataValidationError
from coreperturb.graph._kg import KnowledgeGraph

if TYPE_CHECKING:
    from coreperturb.llm._runner import RunStats


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

    The one protocol every registered predictor follows (scikit-learn style), so that the stages, the model
    files, explain and the explorer never ask which class they hold:

    * :meth:`fit` ``(train, context=None)`` on training rows (perturbation, gene, label); ``context`` is
      used only where :attr:`reads_context` is true (training rows of the same task in other cell lines).
    * :meth:`predict_proba` returns ``(n, 2)`` like scikit-learn classifiers; :meth:`score` returns a frame
      with ``score`` and whatever evidence the method has (:data:`SCORE_COLUMNS`).
    * :meth:`fitted_state` / :meth:`from_fitted_state` save and rebuild a fitted predictor (model files).
    * :meth:`get_params` / :meth:`set_params` read and change constructor parameters, read from the
      constructor's signature, so :func:`sklearn.base.clone` works: a constructor stores its arguments as
      given and does no work (checks and defaults happen in ``fit``); :meth:`saved_params` is the
      JSON-safe part a model file keeps.

    After ``fit``, ``threshold_`` holds the decision threshold chosen on training data (out-of-fold where the
    method learns anything), used for F1 / accuracy / predicted-positive rate.

    Attributes:
        name: The registry name.
        uses_context: ``fit`` needs ``context`` rows (transfer methods).
        reads_context: ``fit`` uses ``context`` rows when it is given them (CORE-Voting: a fit of several
            lines gives them by default, :attr:`coreperturb.FitConfig.cross_line`).
        uses_llm: The method asks an LLM (its per-run result store, response cache and rationale length
            are parameters: ``result_store``, ``response_cache``, ``reasoning_tokens``).
        shows_evidence: The method retrieves contrastive evidence per query (``evidence(queries)``), which
            ``explain`` and the explorer show.
    """

    name: str = "predictor"
    uses_context: bool = False
    reads_context: bool = False
    uses_llm: bool = False
    shows_evidence: bool = False
    threshold_: float = 0.5

    @abstractmethod
    def fit(self, train: pd.DataFrame, context: pd.DataFrame | None = None) -> Self:
        """Fit on training rows (``context``: other cell lines' training rows, where :attr:`uses_context`)."""

    @abstractmethod
    def predict_proba(self, queries: pd.DataFrame) -> np.ndarray:
        """Return ``(n, 2)`` probabilities of label 0 and 1."""

    def predict(self, queries: pd.DataFrame) -> np.ndarray:
        """Hard 0/1 predictions at ``threshold_``."""
        return (self.predict_proba(queries)[:, 1] >= self.threshold_).astype(np.int8)

    def score(self, queries: pd.DataFrame) -> pd.DataFrame:
        """Per query, in input order: ``score`` = P(positive) (float64), and the evidence columns of
        :data:`SCORE_COLUMNS` that the method produces."""
        return pd.DataFrame({"score": self.predict_proba(queries)[:, 1].astype(np.float64)})

    def score_grid(self, perturbations: Sequence[str], genes: Sequence[str], task: str) -> pd.DataFrame:
        """:meth:`score` of every ``perturbation × gene`` pair (perturbation-major order)."""
        q = pd.DataFrame(
            {
                "perturbation": np.repeat(np.asarray(perturbations, dtype=object), len(genes)),
                "gene": np.tile(np.asarray(genes, dtype=object), len(perturbations)),
                "task": task,
            }
        )
        return self.score(q)

    def run_stats(self) -> RunStats | None:
        """Call / cache / token counters of the LLM calls made so far (``None``: the method asks no LLM)."""
        return None

    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor's parameter names, read from its signature (as scikit-learn does)."""
        sig = inspect.signature(cls.__init__)
        skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind not in skip]

    def get_params(self, *, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as given, the KG included (what :func:`sklearn.base.clone` rebuilds from).

        Args:
            deep: Also list the parameters of parameters that are estimators (``combiner__max_iter``).
        """
        out: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any) -> Self:
        """Change constructor parameters (``name__sub`` reaches a parameter of an estimator parameter), e.g. a
        fitted LLM method's ``response_cache``.

        Raises:
            ValueError: A name that is no parameter of this predictor.
        """
        known = self._param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            head, _, sub = key.partition("__")
            if head not in known:
                raise ValueError(f"{self.name} has no parameter {head!r}; it has {', '.join(sorted(known))}")
            if sub:
                nested.setdefault(head, {})[sub] = value
            else:
                setattr(self, head, value)
        for head, sub_params in nested.items():
            getattr(self, head).set_params(**sub_params)
        return self

    def saved_params(self) -> dict[str, Any]:
        """The constructor parameters a model file keeps (JSON-safe; no KG, no run-time places)."""
        return {}

    def fitted_state(self) -> FittedState:
        """The fitted state to save (see :mod:`coreperturb._model_files`)."""
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


SCORE_COLUMNS: tuple[str, ...] = (
    "score",
    "n_pos_evidence",
    "n_neg_evidence",
    "from_cache",
    "error",
    "p_yes",
    "score_method",
    "rationale",
)
"""What :meth:`Predictor.score` may return: ``score`` always; evidence counts where the method retrieves
evidence; ``from_cache`` / ``error`` / ``p_yes`` / ``score_method`` / ``rationale`` for LLM methods."""


PredictorFactory = Callable[..., Predictor]
PREDICTORS: Registry[PredictorFactory] = Registry("predictor")
LLM_METHODS: tuple[str, ...] = ("llm_isolated", "core_reasoning")
"""The registered methods that ask an LLM (their module loads the LLM layer)."""
PREDICTORS.lazy(
    {
        "core_voting": "coreperturb.predictors._core_voting",
        "core_voting_transfer": "coreperturb.predictors._core_voting",
        "gene_frequency": "coreperturb.predictors._simple",
        "knn_retrieval": "coreperturb.predictors._simple",
        "llm_isolated": "coreperturb.predictors._llm",
        "core_reasoning": "coreperturb.predictors._llm",
    }
)


def make_predictor(name: str, kg: KnowledgeGraph, **params: object) -> Predictor:
    """Instantiate the predictor registered as ``name`` with the knowledge graph."""
    return PREDICTORS.get(name)(kg=kg, **params)


TRAINING_COLUMNS: tuple[str, ...] = ("perturbation", "gene", "label")
"""The columns every predictor's ``fit`` reads."""


def check_training_rows(train: pd.DataFrame, method: str) -> pd.DataFrame:
    """``train`` with a fresh index, after checking what ``fit`` needs: the columns of
    :data:`TRAINING_COLUMNS`, at least one row, and labels 0 / 1.

    Raises:
        DataValidationError: Naming the missing column, or the first row with a bad label.
    """
    if not isinstance(train, pd.DataFrame):
        raise DataValidationError(
            f"{method}.fit needs a DataFrame of training rows, got {type(train).__name__}"
        )
    missing = [c for c in TRAINING_COLUMNS if c not in train.columns]
    if missing:
        raise DataValidationError(
            f"{method}.fit: the training rows have no column {', '.join(map(repr, missing))} "
            f"(they have {', '.join(map(str, train.columns)) or 'none'})"
        )
    if train.empty:
        raise DataValidationError(f"{method}.fit: no training rows")
    labels = pd.to_numeric(train["label"], errors="coerce")
    bad = ~labels.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(
            f"{method}.fit: row {i} has label {train['label'].iloc[i]!r}; labels must be 0 or 1"
        )
    return train.reset_index(drop=True)


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
        retune()  # long work: the thread count follows what else runs on the machine
        f = fn(q, train.loc[folds != k])
        f.index = q.index
        parts.append(f)
    return pd.concat(parts).loc[train.index], folds
