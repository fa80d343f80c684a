"""Baselines: gene frequency and KG nearest-neighbour retrieval (no gene-level organisation)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coreperturb._util import positions
from coreperturb.evaluation._metrics import best_f1_threshold
from coreperturb.evidence._pool import ObservationPool
from coreperturb.evidence._similarity import relational_similarity
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.predictors._base import PREDICTORS, FittedState, Predictor, check_training_rows, cross_fit


def _two_col(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return np.column_stack([1 - p, p])


@PREDICTORS.register("gene_frequency")
class GeneFrequency(Predictor):
    """P(positive) = the gene's positive rate over training perturbations (Beta-smoothed).

    Constant within a gene, so its macro per-gene AUROC is exactly 0.5 by construction.

    Args:
        kg: Unused (accepted for a uniform constructor).
        prior: Pseudo-count pulling thinly observed genes toward the global rate.
    """

    name = "gene_frequency"

    def __init__(self, kg: KnowledgeGraph | None = None, prior: float = 1.0) -> None:
        self.kg = kg
        self.prior = prior

    def fit(self, train: pd.DataFrame, context: pd.DataFrame | None = None) -> GeneFrequency:
        """Count positives and observations per gene; threshold from leave-one-perturbation-out rates."""
        train = check_training_rows(train, self.name)
        self.pool_ = ObservationPool.from_frame(train)
        self.rate_ = pd.Series(self.pool_.gene_rate(self.prior), index=self.pool_.genes)
        self.global_ = self.pool_.global_rate
        gi = positions(self.pool_.genes, train["gene"].astype(str))
        y = train["label"].to_numpy(dtype=np.float64)
        pos, obs = self.pool_.gene_pos[gi] - y, self.pool_.gene_obs[gi] - 1
        loo = (pos + 2 * self.prior * self.global_) / (obs + 2 * self.prior)
        self.threshold_ = best_f1_threshold(y, loo)
        return self

    def predict_proba(self, queries: pd.DataFrame) -> np.ndarray:
        """Gene rate, or the global rate for genes never observed in training."""
        p = self.rate_.reindex(queries["gene"].astype(str)).fillna(self.global_).to_numpy()
        return _two_col(p)

    def saved_params(self) -> dict[str, object]:
        """Constructor parameters (without the KG)."""
        return {"prior": self.prior}

    def fitted_state(self) -> FittedState:
        """Counting is exact and cheap: the training rows are the whole state."""
        return FittedState(self.saved_params())

    @classmethod
    def from_fitted_state(
        cls, kg: KnowledgeGraph, state: FittedState, train: pd.DataFrame, context: pd.DataFrame | None = None
    ) -> GeneFrequency:
        """Re-count the training rows (bit-identical to the saved model)."""
        return cls(kg, **state.params).fit(train)


@PREDICTORS.register("knn_retrieval")
class KnnRetrieval(Predictor):
    """SUMMER-like retrieval without an LLM: the KG nearest neighbours of p, pooled over all their outcomes.

    The neighbours' overall positive rate (regardless of which genes responded) is combined with the gene's
    base rate by a two-feature logistic regression fitted on out-of-fold training perturbations.

    Args:
        kg: Knowledge graph.
        top_k: Neighbours per perturbation.
        n_folds: Cross-fitting folds over training perturbations.
        seed: Fold assignment seed.
    """

    name = "knn_retrieval"

    def __init__(self, kg: KnowledgeGraph, top_k: int = 50, n_folds: int = 5, seed: int = 0) -> None:
        self.kg = kg
        self.top_k = top_k
        self.n_folds = n_folds
        self.seed = seed

    def _features(self, queries: pd.DataFrame, pool_rows: pd.DataFrame) -> pd.DataFrame:
        pool = ObservationPool.from_frame(pool_rows)
        qp = sorted(pd.unique(queries["perturbation"].astype(str)))
        sims = relational_similarity(self.kg, qp, list(pool.perturbations), top_k=self.top_k)
        s = sims.combined
        denom = s.sum(axis=1)
        strength = np.where(
            denom > 0, (s @ pool.perturbation_rate) / np.maximum(denom, 1e-12), pool.global_rate
        )
        qi = positions(sims.queries, queries["perturbation"].astype(str))
        b = pool.rate_of(queries["gene"].astype(str))
        lg = lambda x: np.log(np.clip(x, 1e-6, 1 - 1e-6) / (1 - np.clip(x, 1e-6, 1 - 1e-6)))  # noqa: E731
        return pd.DataFrame(
            {"base": lg(b), "neighbour_rate": lg(strength[qi]) - lg(np.array(pool.global_rate))}
        )

    def fit(self, train: pd.DataFrame, context: pd.DataFrame | None = None) -> KnnRetrieval:
        """Cross-fit the two features on training perturbations and fit the logistic combiner."""
        train = check_training_rows(train, self.name)
        feats, _ = cross_fit(train, self.n_folds, self.seed, self._features)
        y = train["label"].to_numpy()
        from sklearn.linear_model import LogisticRegression

        self.model_ = LogisticRegression(max_iter=1000).fit(feats.to_numpy(), y)
        self.threshold_ = best_f1_threshold(y, self.model_.predict_proba(feats.to_numpy())[:, 1])
        self.train_ = train
        return self

    def predict_proba(self, queries: pd.DataFrame) -> np.ndarray:
        """Probabilities for queries, with all training perturbations as the neighbour pool."""
        return np.asarray(self.model_.predict_proba(self._features(queries, self.train_).to_numpy()))

    def saved_params(self) -> dict[str, object]:
        """Constructor parameters (without the KG)."""
        return {"top_k": self.top_k, "n_folds": self.n_folds, "seed": self.seed}

    def fitted_state(self) -> FittedState:
        """Parameters, threshold and the fitted logistic combiner."""
        return FittedState(self.saved_params(), {"threshold_": self.threshold_}, {"model_": self.model_})

    @classmethod
    def from_fitted_state(
        cls, kg: KnowledgeGraph, state: FittedState, train: pd.DataFrame, context: pd.DataFrame | None = None
    ) -> KnnRetrieval:
        """Rebuild from the saved combiner and the training rows (the neighbour pool)."""
        obj = cls(kg, **state.params)
        obj.threshold_ = float(state.attrs["threshold_"])
        obj.model_ = state.estimators["model_"]
        obj.train_ = train.reset_index(drop=True)
        return obj
