"""CORE-Voting: a similarity-weighted, calibrated vote over contrastive evidence (no LLM).

A little over 500 lines: the estimator, its transfer variant and their model-file round trip stay together.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from coreperturb._deprecation import keyword_options
from coreperturb._profiling import stage
from coreperturb._util import logit, positions
from coreperturb.errors import DataValidationError
from coreperturb.evaluation._metrics import best_f1_threshold, grouped_auroc
from coreperturb.evidence._context import ContextEvidence, check_context
from coreperturb.evidence._contrastive import ContrastiveEvidence, build_evidence
from coreperturb.evidence._features import FeatureParams, PreparedPool, features_at
from coreperturb.evidence._pool import ObservationPool
from coreperturb.evidence._similarity import SimilarityBundle, relational_similarity
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.predictors._base import (
    PREDICTORS,
    FittedState,
    Predictor,
    check_training_rows,
    cross_fit,
    perturbation_folds,
)
from coreperturb.predictors._compiled import combiner_proba

if TYPE_CHECKING:
    from sklearn.base import ClassifierMixin

log = logging.getLogger(__name__)
_PREPARE_LOCK = threading.RLock()

COMBINERS = ("logistic", "boosting")


class DegenerateModelWarning(UserWarning):
    """A fitted model that cannot tell perturbations apart (e.g. too few training rows)."""


def _logit_col(p: np.ndarray) -> np.ndarray:
    return logit(p)[:, None]


def _make_combiner(name: str | ClassifierMixin, seed: int, n_rows: int | None = None) -> ClassifierMixin:
    # scikit-learn is imported where a model is fitted: predicting from a saved model never needs it
    from sklearn.base import clone
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not isinstance(name, str):
        return clone(name)
    if name == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if name == "boosting":
        # Small, L2-regularised trees: chosen by 4-fold cross-validation over TRAINING perturbations of the
        # four PerturbQA lines (benchmarks/inner_cv.py), never on the test split. The minimum leaf size is
        # 200 there (every line has > 10,000 training rows); on small user tables it shrinks to 2% of the
        # rows (at least 20) so that the trees can split at all instead of predicting a constant.
        min_leaf = 200 if n_rows is None else int(min(200, max(20, n_rows // 50)))
        return HistGradientBoostingClassifier(
            max_iter=300,
            learning_rate=0.05,
            max_leaf_nodes=15,
            min_samples_leaf=min_leaf,
            l2_regularization=1.0,
            random_state=seed,
        )
    raise ValueError(f"unknown combiner {name!r}; choose from {COMBINERS} or 'auto'")


FEATURE_DEFAULTS = FeatureParams()
"""The evidence-feature defaults (one home: :class:`~coreperturb.evidence.FeatureParams`)."""


def _score_frame(p: np.ndarray, counts: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "score": p,
            "n_pos_evidence": counts["n_pos_evidence"].to_numpy(),
            "n_neg_evidence": counts["n_neg_evidence"].to_numpy(),
        }
    )


@PREDICTORS.register("core_voting")
class CoreVoting(Predictor):
    """Contrastive vote over related perturbations' outcomes on the same gene, combined across relations.

    For a query (p, g) every KG relation (GO aspects propagated up the DAG, network, pathways, complexes)
    yields a similarity-weighted vote: the share of related training perturbations that made g positive,
    shrunk toward g's base rate. The per-relation votes, their evidence mass, the strongest positive and
    negative evidence, a gene-module smoothed vote, direct p–g links and how p's own gene behaves as a
    readout are combined by a model fitted on *out-of-fold* training perturbations (features of each fold
    are computed with that fold removed from the evidence pool), then calibrated by Platt scaling (strictly
    monotone, so no ties are introduced within a gene) on a held-out slice of training perturbations.
    Test perturbations are never used for fitting or calibration.

    Args:
        kg: Knowledge graph.
        relations: Relations to vote over (default: all in the KG).
        top_k: Related perturbations kept per query perturbation and relation; several values = choose by
            held-out macro per-gene AUROC on training perturbations.
        combiner: ``boosting`` (default), ``logistic``, ``auto`` (pick by held-out macro per-gene AUROC;
            that score is biased toward 0.5 by cross-fitting, see :func:`evidence_features`, so ``auto`` is
            not the default), or any scikit-learn classifier with ``predict_proba`` (it is cloned).
        n_folds: Cross-fitting folds over training perturbations.
        holdout_fraction: Share of training perturbations used to pick the combiner and fit calibration.
        prior_strength: Pseudo-count of the gene base rate in each vote.
        module_k: Co-responding genes per gene in the module-smoothed vote.
        module_self: Weight of the gene itself in the module-smoothed vote.
        seed: Random seed.
    """

    name = "core_voting"
    uses_context = False
    reads_context = True
    shows_evidence = True
    context_: ContextEvidence | None = None

    @keyword_options
    def __init__(
        self,
        kg: KnowledgeGraph,
        *,
        relations: list[str] | None = None,
        top_k: int | Sequence[int] = 100,
        combiner: str | ClassifierMixin = "boosting",
        n_folds: int = 10,
        holdout_fraction: float = 0.2,
        prior_strength: float = FEATURE_DEFAULTS.prior_strength,
        module_k: int = FEATURE_DEFAULTS.module_k,
        module_self: float = FEATURE_DEFAULTS.module_self,
        seed: int = 0,
    ) -> None:
        self.kg = kg
        self.relations = relations
        self.top_k = top_k
        self.combiner = combiner
        self.n_folds = n_folds
        self.holdout_fraction = holdout_fraction
        self.prior_strength = prior_strength
        self.module_k = module_k
        self.module_self = module_self
        self.seed = seed

    @property
    def feature_params(self) -> FeatureParams:
        """Parameters of the evidence features."""
        return FeatureParams(
            prior_strength=self.prior_strength, module_k=self.module_k, module_self=self.module_self
        )

    def _k(self) -> int:
        k = getattr(self, "top_k_", None)
        if k is None:
            k = self.top_k if isinstance(self.top_k, int) else max(self.top_k)
        return int(k)

    def similarities(
        self, perturbations: list[str], pool: ObservationPool, prepared: PreparedPool | None = None
    ) -> SimilarityBundle:
        """Relation-wise similarity of ``perturbations`` to the pool's perturbations."""
        return relational_similarity(
            self.kg,
            perturbations,
            list(pool.perturbations),
            relations=self.relations,
            top_k=self._k(),
            pool_embeddings=prepared.pool_embeddings if prepared is not None else None,
        )

    def _prepare(self, pool_rows: pd.DataFrame) -> PreparedPool:
        pool = ObservationPool.from_frame(pool_rows, self.genes_)
        return PreparedPool.build(pool, self.kg, self.feature_params, self.relations)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. for Ray workers) without the lock of :meth:`prepared_pool`."""
        return {k: v for k, v in self.__dict__.items() if k != "_prepare_lock_"}

    def prepared_pool(self) -> PreparedPool:
        """The query-independent parts of the features for the fitted evidence pool (built once)."""
        cached = getattr(self, "_prepared_", None)
        if cached is None or cached.pool is not self.pool_:
            with _PREPARE_LOCK:  # one lock per predictor: the DE and direction models build theirs together
                lock = self.__dict__.setdefault("_prepare_lock_", threading.Lock())
            with lock:  # chunks scored side by side build it once
                cached = getattr(self, "_prepared_", None)
                if cached is None or cached.pool is not self.pool_:
                    cached = PreparedPool.build(self.pool_, self.kg, self.feature_params, self.relations)
                    self._prepared_ = cached
        return cached

    def _features(self, queries: pd.DataFrame, pool_rows: pd.DataFrame) -> pd.DataFrame:
        return self._features_and_counts(queries, self._prepare(pool_rows))[0]

    def _features_and_counts(
        self, queries: pd.DataFrame, prepared: PreparedPool
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Model features and the evidence counts (n_pos_evidence, n_neg_evidence) from one retrieval."""
        names, x, counts = self._matrix(queries, prepared)
        return pd.DataFrame(x, columns=names), counts

    def _matrix(
        self, queries: pd.DataFrame, prepared: PreparedPool, sims: SimilarityBundle | None = None
    ) -> tuple[list[str], np.ndarray, pd.DataFrame]:
        pool = prepared.pool
        if sims is None:
            with stage("retrieval"):
                sims = self._query_similarities(queries, prepared)
        qi = positions(sims.queries, queries["perturbation"].astype(str))
        gi = positions(pool.genes, queries["gene"].astype(str))
        return self._assemble(queries, qi, gi, sims, prepared)

    @stage("features")
    def _assemble(
        self,
        queries: pd.DataFrame | None,
        qi: np.ndarray,
        gi: np.ndarray,
        sims: SimilarityBundle,
        prepared: PreparedPool,
    ) -> tuple[list[str], np.ndarray, pd.DataFrame]:
        """Feature names, the feature matrix (float64, column-major) and the evidence counts."""
        pool = prepared.pool
        cols = features_at(
            qi,
            gi,
            pool,
            sims,
            self.kg,
            params=self.feature_params,
            counts=True,
            prepared=prepared,
            as_dict=True,
        )
        assert isinstance(cols, dict)
        counts = pd.DataFrame({c: cols.pop(c) for c in ("n_pos_evidence", "n_neg_evidence")})
        if self.context_ is not None:
            if queries is None:
                queries = pd.DataFrame(
                    {
                        "perturbation": np.asarray(sims.queries, dtype=object)[qi],
                        "gene": pool.genes.to_numpy()[gi],
                    }
                )
            ctx = self.context_.features(queries, pool)
            cols.update({str(c): ctx[c].to_numpy() for c in ctx.columns})
        x = np.empty((len(qi), len(cols)), dtype=np.float64, order="F")
        for j, v in enumerate(cols.values()):
            x[:, j] = v
        return list(cols), x, counts

    def fit(self, train: pd.DataFrame, context: pd.DataFrame | None = None) -> CoreVoting:
        """Cross-fit evidence features, pick and fit the combiner, calibrate on held-out train perturbations.

        With several ``top_k`` values, each is tried and the one with the best held-out macro per-gene AUROC
        (training perturbations only) is kept.

        Args:
            train: Training rows (perturbation, gene, label) of one cell line and task.
            context: Optional TRAINING rows of the same task in other cell lines (cell_line, perturbation,
                gene, label). Adds the features of :class:`ContextEvidence`: how the same perturbations
                behaved elsewhere. Must not share a cell line with ``train``.
        """
        train = check_training_rows(train, self.name)
        self.context_ = None
        if context is not None:
            check_context(context, train)
            self.context_ = ContextEvidence.from_frame(
                context, self.module_k, self.module_self, prior_strength=self.prior_strength
            )
        self.genes_ = pd.Index(sorted(pd.unique(train["gene"].astype(str))))
        y = train["label"].to_numpy()
        hold = (
            perturbation_folds(train["perturbation"], max(2, round(1 / self.holdout_fraction)), self.seed + 1)
            == 0
        )
        genes = train["gene"].astype(str).to_numpy()
        candidates: list[str | ClassifierMixin] = (
            list(COMBINERS) if self.combiner == "auto" else [self.combiner]
        )
        ks = [self.top_k] if isinstance(self.top_k, int) else list(self.top_k)
        self.cv_results_: dict[str, float] = {}
        best: tuple[float, int, str | ClassifierMixin, np.ndarray, np.ndarray] | None = None
        for k in ks:
            self.top_k_ = k
            feats, _ = cross_fit(train, self.n_folds, self.seed, self._features)
            x = feats.to_numpy()
            for name in candidates:
                model = _make_combiner(name, self.seed, int((~hold).sum()))
                model.fit(x[~hold], y[~hold])
                held = model.predict_proba(x[hold])[:, 1]
                score = grouped_auroc(y[hold], held, genes[hold])[0]
                label = name if isinstance(name, str) else type(name).__name__
                self.cv_results_[f"{label}/top_k={k}" if len(ks) > 1 else label] = score
                if best is None or score > best[0]:
                    best = (score, k, name, x, held)
                    self.feature_names_ = list(feats.columns)
        assert best is not None
        _, self.top_k_, self.combiner_, x, held = best
        from sklearn.linear_model import LogisticRegression

        self.calibrator_ = LogisticRegression(C=1e6, max_iter=1000).fit(_logit_col(held), y[hold])
        calibrated = self.calibrator_.predict_proba(_logit_col(held))[:, 1]
        self.threshold_ = best_f1_threshold(y[hold], calibrated)
        self.model_ = _make_combiner(self.combiner_, self.seed, len(y))
        self.model_.fit(x, y)
        if np.ptp(held) < 1e-9:
            warnings.warn(
                f"{self.name}: the combiner predicts one constant on held-out training perturbations "
                f"({len(y)} training rows, {int(y.sum())} positive): its predictions will not rank "
                "perturbations within a gene; more training perturbations are needed",
                DegenerateModelWarning,
                stacklevel=2,
            )
        self.train_ = train
        self.pool_ = ObservationPool.from_frame(train, self.genes_)
        log.info(
            "core_voting: combiner=%s top_k=%d holdout macro per-gene AUROC=%s",
            self.combiner_,
            self.top_k_,
            self.cv_results_,
        )
        return self

    def features(self, queries: pd.DataFrame) -> pd.DataFrame:
        """Evidence features of queries with all training perturbations as the pool."""
        return self._features_and_counts(queries.reset_index(drop=True), self.prepared_pool())[0]

    def predict_proba(self, queries: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities ``(n, 2)``."""
        p = self.predict_with_evidence(queries)[0]
        return np.column_stack([1 - p, p])

    def score(self, queries: pd.DataFrame) -> pd.DataFrame:
        """Calibrated ``score`` and the evidence counts ``n_pos_evidence`` / ``n_neg_evidence`` per query."""
        p, counts = self.predict_with_evidence(queries)
        return _score_frame(p, counts)

    def score_grid(self, perturbations: Sequence[str], genes: Sequence[str], task: str) -> pd.DataFrame:
        """:meth:`score` of every ``perturbation × gene`` pair (perturbation-major), via :meth:`predict_grid`."""
        p, counts = self.predict_grid(perturbations, genes)
        return _score_frame(p, counts)

    def predict_with_evidence(self, queries: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        """Calibrated P(positive) of each query and its evidence counts, from one evidence retrieval.

        Returns:
            ``(p, counts)``: ``counts`` has columns ``n_pos_evidence`` and ``n_neg_evidence`` (related
            training perturbations that made the gene positive / left it negative).
        """
        return self._score(*self._matrix(queries.reset_index(drop=True), self.prepared_pool()))

    def predict_with_features(
        self, queries: pd.DataFrame, *, sims: SimilarityBundle | None = None
    ) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
        """:meth:`predict_with_evidence` and the model features of each query (:meth:`features`), from one
        retrieval (what ``explain`` shows); ``sims``: those :meth:`evidence` returned for the same queries
        (the retrieval is then not repeated)."""
        names, x, counts = self._matrix(queries.reset_index(drop=True), self.prepared_pool(), sims)
        p, counts = self._score(names, x.copy(order="F"), counts)
        return p, counts, pd.DataFrame(x, columns=names)

    def predict_grid(
        self, perturbations: Sequence[str], genes: Sequence[str]
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """:meth:`predict_with_evidence` for every ``perturbation × gene`` pair (perturbation-major order).

        The same numbers as scoring the pairs one by one, without building per-pair name columns: every
        feature is a perturbations × genes matrix read at integer positions.
        """
        prepared = self.prepared_pool()
        pool = prepared.pool
        with stage("retrieval"):
            sims = self.similarities(list(perturbations), pool, prepared)
        qi = np.repeat(positions(sims.queries, list(perturbations)), len(genes))
        gi = np.tile(positions(pool.genes, list(genes)), len(perturbations))
        return self._score(
            *self._assemble(None, qi, gi, sims, prepared), grid=(len(perturbations), len(genes))
        )

    def _score(
        self, names: list[str], x: np.ndarray, counts: pd.DataFrame, grid: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, pd.DataFrame]:
        if names != self.feature_names_:
            raise ValueError(
                f"{self.name}: this version computes features {names}, but the model was "
                f"fitted on {self.feature_names_}; refit the model"
            )
        with stage("trees"):
            raw = combiner_proba(self.model_, x, grid=grid)
            p = self.calibrator_.predict_proba(_logit_col(raw))[:, 1]
        return np.asarray(p, dtype=np.float64), counts.reset_index(drop=True)

    def evidence(self, queries: pd.DataFrame) -> tuple[ContrastiveEvidence, SimilarityBundle]:
        """Contrastive evidence for queries (first-class object) and the similarities behind it
        (:func:`~coreperturb.evidence.retrieve_evidence`, reading the pool's embeddings built once)."""
        prepared = self.prepared_pool()
        q = queries.reset_index(drop=True)
        sims = self._query_similarities(q, prepared)
        return build_evidence(q, prepared.pool, sims), sims

    def _query_similarities(self, queries: pd.DataFrame, prepared: PreparedPool) -> SimilarityBundle:
        """Similarities of the queries' perturbations (sorted, each once) to the pool's."""
        perts = sorted(pd.unique(queries["perturbation"].astype(str)))
        return self.similarities(perts, prepared.pool, prepared)

    def with_context(self, context: pd.DataFrame) -> CoreVoting:
        """A copy that reads ``context`` (other lines' training rows) in place of the rows it was fitted with,
        its combiner unchanged: e.g. without some perturbations of one line, to answer as it would where that
        line never screened them (``fit`` blends a line's calibration pairs with the other lines' answers
        this way, so that no answer reads the labels it is checked on)."""
        if self.context_ is None:
            return self
        check_context(context, self.train_)
        out = copy.copy(self)
        out.context_ = ContextEvidence.from_frame(
            context, self.module_k, self.module_self, prior_strength=self.prior_strength
        )
        return out

    def context_evidence(
        self, perturbation: str, gene: str, top: int = 8
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """How ``perturbation`` behaved in the other cell lines, and which of this line's perturbations
        measured on ``gene`` responded like it there (a model fitted with context rows only).

        Returns:
            ``(contexts, similar)`` as in :meth:`ContextEvidence.for_query`.

        Raises:
            ValueError: The model was fitted without context rows.
        """
        if self.context_ is None:
            raise ValueError(f"{self.name} was fitted without context rows (use core_voting_transfer)")
        return self.context_.for_query(perturbation, gene, self.pool_, top=top)

    def fitted_state(self) -> FittedState:
        """Parameters, chosen settings, the fitted combiner and calibrator."""
        params = self.saved_params()
        estimators: dict[str, Any] = {"model_": self.model_, "calibrator_": self.calibrator_}
        if not isinstance(self.combiner, str):
            params["combiner"] = "custom"
            from sklearn.base import clone

            estimators["combiner"] = clone(self.combiner)
        combiner = self.combiner_ if isinstance(self.combiner_, str) else type(self.combiner_).__name__
        attrs = {
            "top_k_": int(self.top_k_),
            "combiner_": combiner,
            "threshold_": float(self.threshold_),
            "feature_names_": list(self.feature_names_),
            "cv_results_": {k: float(v) for k, v in self.cv_results_.items()},
        }
        return FittedState(params, attrs, estimators)

    @classmethod
    def from_fitted_state(
        cls, kg: KnowledgeGraph, state: FittedState, train: pd.DataFrame, context: pd.DataFrame | None = None
    ) -> CoreVoting:
        """Rebuild from the saved combiner / calibrator, the training rows (evidence pool) and context rows.

        Raises:
            ValueError: The saved features do not match what this version computes.
        """
        params = dict(state.params)
        if params.get("combiner") == "custom":
            params["combiner"] = state.estimators["combiner"]
        obj = cls(kg, **params)
        obj.top_k_ = int(state.attrs["top_k_"])
        obj.combiner_ = state.attrs["combiner_"]
        obj.threshold_ = float(state.attrs["threshold_"])
        obj.feature_names_ = list(state.attrs["feature_names_"])
        obj.cv_results_ = dict(state.attrs.get("cv_results_", {}))
        obj.model_ = state.estimators["model_"]
        obj.calibrator_ = state.estimators["calibrator_"]
        obj.train_ = train.reset_index(drop=True)
        # the pool's own sorted genes are fit()'s genes_ (sorted distinct readouts), found in one hashing pass
        obj.pool_ = ObservationPool.from_frame(obj.train_)
        obj.genes_ = obj.pool_.genes
        obj.context_ = None
        if cls.uses_context or context is not None:
            if context is None or context.empty:
                raise ValueError(f"{cls.name}: the model file holds no context rows")
            obj.context_ = ContextEvidence.from_frame(
                context, obj.module_k, obj.module_self, prior_strength=obj.prior_strength
            )
        n_in = getattr(obj.model_, "n_features_in_", len(obj.feature_names_))
        if n_in != len(obj.feature_names_):
            raise ValueError(
                f"{cls.name}: the combiner expects {n_in} features but {len(obj.feature_names_)} are named"
            )
        return obj

    def saved_params(self) -> dict[str, object]:
        """Constructor parameters (without the KG; a custom combiner as its repr)."""
        return {
            "relations": self.relations,
            "top_k": self.top_k if isinstance(self.top_k, int) else list(self.top_k),
            "combiner": self.combiner if isinstance(self.combiner, str) else repr(self.combiner),
            "n_folds": self.n_folds,
            "holdout_fraction": self.holdout_fraction,
            **asdict(self.feature_params),
            "seed": self.seed,
        }


@PREDICTORS.register("core_voting_transfer")
class CoreVotingTransfer(CoreVoting):
    """CORE-Voting plus evidence from the same perturbations observed in OTHER cell lines.

    Identical to :class:`CoreVoting`, but :meth:`fit` requires ``context``: training rows of the same task
    in other cell lines. The benchmark passes every other loaded line's training rows (never test rows, never
    the target line's own rows). This uses more training data than the per-line PerturbQA protocol, so its
    scores are reported as their own method, beside ``core_voting``.
    """

    name = "core_voting_transfer"
    uses_context = True

    def fit(self, train: pd.DataFrame, context: pd.DataFrame | None = None) -> CoreVotingTransfer:
        """Fit with context rows from other cell lines (required)."""
        if context is None or context.empty:
            raise DataValidationError(
                "core_voting_transfer needs training rows of the same task in at least one other cell line; "
                "load several cell lines (e.g. --cell-lines k562,rpe1,hepg2,jurkat)"
            )
        super().fit(train, context)
        return self
