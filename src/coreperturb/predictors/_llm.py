"""LLM predictors: the isolated "virtual cell" baseline and CORE-Reasoning, same model, same scoring."""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from coreperturb import _defaults as d
from coreperturb._deprecation import keyword_options
from coreperturb._util import Progress, logit
from coreperturb.data._sampling import stratified_by_gene
from coreperturb.evaluation._metrics import best_f1_threshold
from coreperturb.evidence._contrastive import retrieve_evidence
from coreperturb.evidence._pool import ObservationPool
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.llm._backends import Backend, LLMSettings, make_backend
from coreperturb.llm._cache import LLMCache, default_response_cache
from coreperturb.llm._distributed import RayExecutor
from coreperturb.llm._prompts import PromptBuilder, template_for
from coreperturb.llm._runner import LLMRunner, RunStats
from coreperturb.predictors._base import (
    LLM_METHODS,
    PREDICTORS,
    FittedState,
    Predictor,
    check_training_rows,
    perturbation_folds,
)

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

log = logging.getLogger(__name__)


class LLMPredictor(Predictor):
    """An LLM answers Yes/No per query; P(yes) from its token log-probabilities, Platt-calibrated on train.

    Prompts → backend (cached, resumable) → P(yes) → calibration. :class:`LLMIsolated` and
    :class:`CoreReasoning` differ only in the prompt family (``isolated``: KG facts about p and g;
    ``core``: the contrastive evidence).

    Args:
        kg: Knowledge graph.
        llm: How to reach the model (:class:`~coreperturb.llm.LLMSettings`) or a backend object.
        result_store: This run's SQLite store of scored rows (resume, retry); default: a private temporary
            directory, never shared between runs.
        calibration_queries: Held-out TRAIN queries scored to fit the calibration (0 = uncalibrated).
        top_k: Related perturbations retrieved per query (``core`` prompts).
        n_evidence: Evidence rows per side shown in a prompt.
        retry_failed: Re-run rows stored with an error.
        progress: Called with ``(done, total)`` while scoring.
        unit: Label of the result-store unit.
        seed: Seed of the calibration sample.
        executor: Runs the calls over Ray Data instead of in-process.
        response_cache: Shared SQLite cache of LLM answers (default: the user cache directory).
        reasoning_tokens: Rationale length before the forced Yes/No answer (0 = answer at once).
    """

    family = "isolated"
    uses_llm = True

    @keyword_options
    def __init__(
        self,
        kg: KnowledgeGraph,
        *,
        llm: LLMSettings | Backend | None = None,
        result_store: str | Path | None = None,
        calibration_queries: int = d.CALIBRATION_QUERIES,
        top_k: int = 100,
        n_evidence: int = 6,
        retry_failed: bool = False,
        progress: Progress | None = None,
        unit: str = "default",
        seed: int = 0,
        executor: RayExecutor | None = None,
        response_cache: str | Path | None = None,
        reasoning_tokens: int = 0,
    ) -> None:
        self.kg = kg
        self.llm = llm
        self.result_store = result_store
        self.calibration_queries = calibration_queries
        self.top_k = top_k
        self.n_evidence = n_evidence
        self.retry_failed = retry_failed
        self.progress = progress
        self.unit = unit
        self.seed = seed
        self.executor = executor
        self.response_cache = response_cache
        self.reasoning_tokens = reasoning_tokens

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. for Ray) without the clean-up of the private result store, which stays here."""
        return {k: v for k, v in self.__dict__.items() if k != "_store_cleanup"}

    @property
    def settings(self) -> LLMSettings | Backend:
        """How the model is reached: ``llm``, or the default :class:`LLMSettings`."""
        return self.llm if self.llm is not None else LLMSettings()

    def _reasoning(self) -> int:
        tokens = int(self.reasoning_tokens)
        if tokens < 0:
            raise ValueError(f"reasoning_tokens must be >= 0, got {self.reasoning_tokens}")
        return tokens

    def _result_store(self) -> Path:
        """``result_store``; without one, a private temporary directory made at the first call and removed
        with this predictor (never the working directory: a store shared between runs could hand back
        results computed from other training data)."""
        if self.result_store:
            return Path(self.result_store)
        if getattr(self, "private_store_", None) is None:
            folder = tempfile.mkdtemp(prefix="coreperturb-llm-")
            self._store_cleanup = weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
            self.private_store_ = Path(folder) / "results.sqlite"
        return Path(self.private_store_)

    # -- plumbing ---------------------------------------------------------------------------------
    def _backend(self) -> Backend:
        if not hasattr(self, "backend_"):
            llm = self.settings
            self.backend_ = llm if isinstance(llm, Backend) else make_backend(llm)
        return self.backend_

    def messages(
        self, queries: pd.DataFrame, pool_rows: pd.DataFrame | None = None
    ) -> list[list[dict[str, str]]]:
        """The chat prompt of each query (one task per call), with ``pool_rows`` (default: the training
        rows) as the observed outcomes."""
        q = queries.reset_index(drop=True)
        task = str(q["task"].iat[0]) if "task" in q.columns else "de"
        pool = ObservationPool.from_frame(self.train_ if pool_rows is None else pool_rows)
        builder = PromptBuilder(self.kg, pool, n_evidence=self.n_evidence)
        if self.family == "core":
            ev, sims = retrieve_evidence(self.kg, q, pool, top_k=self.top_k)
            return builder.render("core", task, q, ev, sims)
        return builder.render("isolated", task, q)

    def _score(self, queries: pd.DataFrame, pool_rows: pd.DataFrame, split: str) -> pd.DataFrame:
        """Raw P(yes) per query with the pool as evidence; columns p_yes, score_method, error, from_cache."""
        q = queries.reset_index(drop=True)
        task = str(q["task"].iat[0]) if "task" in q.columns else "de"
        tpl = template_for(self.family, task)
        order = np.lexsort((q["perturbation"].astype(str).to_numpy(), q["gene"].astype(str).to_numpy()))
        qs = q.iloc[order].reset_index(drop=True)  # gene-major: shared prefixes reach the server together
        msgs = self.messages(qs, pool_rows)
        keys = (qs["perturbation"].astype(str) + "\t" + qs["gene"].astype(str)).tolist()
        backend = self._backend()
        line = str(qs["cell_line"].iat[0]) if "cell_line" in qs.columns else "-"
        reasoning = self._reasoning()
        mode = f"/reasoning{reasoning}" if reasoning else ""
        unit = f"{self.unit}/{line}/{task}/{split}/{tpl.hash}/{backend.model_id}{mode}"
        shared = Path(self.response_cache) if self.response_cache else default_response_cache()
        cache = LLMCache(self._result_store(), shared)
        try:
            runner = LLMRunner(
                backend,
                cache,
                progress=self.progress,
                executor=self.executor,
                reasoning_tokens=reasoning,
            )
            rows, stats = runner.run(unit, self.name, keys, msgs, tpl.hash, retry_failed=self.retry_failed)
        finally:
            cache.close()
        self.run_stats().add(stats)
        out = pd.DataFrame(
            {
                "p_yes": [r.score for r in rows],
                "score_method": [r.score_method for r in rows],
                "error": [r.error for r in rows],
                "from_cache": [r.from_cache for r in rows],
                "rationale": [r.rationale for r in rows],
            }
        )
        back = np.empty(len(order), dtype=np.int64)
        back[order] = np.arange(len(order))
        return out.iloc[back].reset_index(drop=True)

    @staticmethod
    def _logit(p: np.ndarray) -> np.ndarray:
        return logit(p, eps=1e-4)[:, None]

    # -- estimator API ----------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, context: pd.DataFrame | None = None) -> LLMPredictor:
        """Keep the training pool; fit Platt calibration on LLM scores of held-out TRAIN perturbations."""
        train = check_training_rows(train, self.name)
        self._reasoning()
        self.train_ = train
        self.pool_ = ObservationPool.from_frame(train)
        self.calibrator_: LogisticRegression | None = None
        self.threshold_ = 0.5
        if self.calibration_queries <= 0:
            return self
        hold = perturbation_folds(train["perturbation"], 5, self.seed + 7) == 0
        cal = stratified_by_gene(
            train.loc[hold].reset_index(drop=True), self.calibration_queries, self.seed, per_gene=10
        )
        if cal["label"].nunique() < 2:
            log.warning("%s: calibration slice has one class; probabilities left uncalibrated", self.name)
            return self
        raw = self._score(cal, train.loc[~hold], split="calibration")
        # kept for model selection on TRAIN data only (e.g. which embedded model reads evidence better)
        self.calibration_scores_ = cal[["perturbation", "gene", "label"]].assign(
            p_yes=raw["p_yes"].to_numpy(), error=raw["error"].to_numpy()
        )
        ok = raw["error"].isna().to_numpy()
        y = cal["label"].to_numpy()[ok]
        if ok.sum() >= 10 and len(np.unique(y)) == 2:
            x = self._logit(raw["p_yes"].to_numpy(dtype=np.float64)[ok])
            from sklearn.linear_model import LogisticRegression

            self.calibrator_ = LogisticRegression(C=1e4, max_iter=1000).fit(x, y)
            self.threshold_ = best_f1_threshold(y, self.calibrator_.predict_proba(x)[:, 1])
        return self

    def score_table(self, queries: pd.DataFrame) -> pd.DataFrame:
        """Per query: calibrated ``score``, raw ``p_yes``, ``score_method``, ``error``, ``from_cache``.

        Rows whose call failed get no score (``NaN``; their ``error`` says why): a failed call is never
        replaced by a confident-looking number such as the gene's base rate.
        """
        q = queries.reset_index(drop=True)
        raw = self._score(q, self.train_, split="test")
        p = raw["p_yes"].to_numpy(dtype=np.float64)
        ok = ~np.isnan(p)
        score = np.full(len(q), np.nan)
        if self.calibrator_ is not None:
            score[ok] = self.calibrator_.predict_proba(self._logit(p[ok]))[:, 1]
        else:
            score[ok] = p[ok]
        raw.insert(0, "score", score)
        self.last_scores_ = raw
        return raw

    def score(self, queries: pd.DataFrame) -> pd.DataFrame:
        """:meth:`score_table`: ``score``, ``p_yes``, ``score_method``, ``error``, ``from_cache``, ``rationale``."""
        return self.score_table(queries)

    def run_stats(self) -> RunStats:
        """Call / cache / token counters of every call this predictor made."""
        if getattr(self, "stats_", None) is None:
            self.stats_ = RunStats()
        return self.stats_

    def predict_proba(self, queries: pd.DataFrame) -> np.ndarray:
        """Calibrated probabilities ``(n, 2)``."""
        s = self.score_table(queries)["score"].to_numpy()
        return np.column_stack([1 - s, s])

    def fitted_state(self) -> FittedState:
        """LLM settings (never the API key), the calibration and the threshold.

        Raises:
            ValueError: The predictor holds a backend object (e.g. ``scripted``), which has no saved form.
        """
        if isinstance(self.settings, Backend):
            raise ValueError(
                f"{self.name} was fitted with a backend object ({type(self.llm).__name__}); only models "
                "fitted with LLMSettings (embedded / openai / vllm) can be saved"
            )
        params = self.saved_params()
        est = {"calibrator_": self.calibrator_} if self.calibrator_ is not None else {}
        return FittedState(params, {"threshold_": float(self.threshold_)}, est)

    @classmethod
    def from_fitted_state(
        cls, kg: KnowledgeGraph, state: FittedState, train: pd.DataFrame, context: pd.DataFrame | None = None
    ) -> LLMPredictor:
        """Rebuild: the LLM is reached again through the saved settings (API key from the environment)."""
        params = dict(state.params)
        llm = LLMSettings(**params.pop("llm"))
        obj = cls(kg, llm=llm, **params)
        obj.train_ = train.reset_index(drop=True)
        obj.pool_ = ObservationPool.from_frame(obj.train_)
        obj.calibrator_ = state.estimators.get("calibrator_")
        obj.threshold_ = float(state.attrs["threshold_"])
        return obj

    def saved_params(self) -> dict[str, Any]:
        """Constructor parameters a model file keeps (no KG, backend object, API key or run-time places)."""
        llm = self.settings.describe() if isinstance(self.settings, Backend) else vars(self.settings)
        return {
            "llm": {k: v for k, v in llm.items() if k != "api_key"},
            "calibration_queries": self.calibration_queries,
            "top_k": self.top_k,
            "n_evidence": self.n_evidence,
            "seed": self.seed,
            "reasoning_tokens": self._reasoning(),
        }


@PREDICTORS.register("llm_isolated")
class LLMIsolated(LLMPredictor):
    """Isolated LLM reasoning: KG facts about p and g, no contrastive evidence (the "virtual cell" baseline)."""

    name = "llm_isolated"
    family = "isolated"


@PREDICTORS.register("core_reasoning")
class CoreReasoning(LLMPredictor):
    """CORE-Reasoning: the LLM compares p with related perturbations that did / did not change g."""

    name = "core_reasoning"
    family = "core"


__all__ = ["LLM_METHODS", "CoreReasoning", "LLMIsolated", "LLMPredictor", "stratified_by_gene"]
