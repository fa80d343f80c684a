"""The public stages: ``fit`` → ``predict`` → ``evaluate``.

:func:`fit` trains every method on the training rows of every (cell line, task) and returns a
:class:`FittedModels` (save it with :func:`coreperturb.model_files.save_model`); :func:`predict` scores any
(perturbation, gene) queries with it; :func:`evaluate_predictions` computes the metrics of labelled
predictions. ``coreperturb benchmark`` is exactly fit (train split) → predict (test split) → evaluate
(:func:`coreperturb.pipeline.run_benchmark`). :func:`predict_grid` scores perturbations × genes in chunks
for genome-wide prediction (``coreperturb predict``).
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coreperturb._util import positions
from coreperturb.data.schema import QueryTable
from coreperturb.errors import CorePerturbError
from coreperturb.evaluate.metrics import evaluate
from coreperturb.evidence.contrastive import retrieve_evidence
from coreperturb.evidence.pool import ObservationPool
from coreperturb.graph.kg import KnowledgeGraph
from coreperturb.llm.backends import Backend, LLMSettings, make_backend
from coreperturb.llm.distributed import RayExecutor
from coreperturb.llm.runner import Progress, RunStats
from coreperturb.predictors.base import PREDICTORS, Predictor, make_predictor
from coreperturb.predictors.core_voting import CoreVoting
from coreperturb.predictors.effect import effect_score, gene_prior
from coreperturb.predictors.llm import LLM_METHODS, _LLMPredictor

log = logging.getLogger(__name__)

TRAIN_COLUMNS: tuple[str, ...] = ("cell_line", "task", "perturbation", "gene", "label")
"""Columns of the training rows a fitted model keeps (its evidence pool)."""

GRID_COLUMNS: tuple[str, ...] = (
    "cell_line",
    "perturbation",
    "gene",
    "method",
    "p_de",
    "p_up",
    "p_prior",
    "effect",
    "p_de_up",
    "p_de_down",
    "effect_up",
    "effect_down",
    "n_pos_evidence",
    "n_neg_evidence",
    "kg_coverage",
    "flag",
)
"""Columns written by ``coreperturb predict`` (one row per cell line, perturbation, gene and method)."""

RANK_BY: dict[str, str] = {"p_de": "p_de", "effect": "effect", "up": "effect_up", "down": "effect_down"}
"""``rank_by`` name → the column a ranking sorts by (descending). ``up`` / ``down`` rank by the lift of
P(DE and up) / P(DE and down) over the gene's prior for that event, so they are specific too, among the
rows predicted to go that way (:func:`rank_key`)."""
RANK_PER: tuple[str, ...] = ("perturbation", "gene")
DEFAULT_RANK_BY = "effect"
"""Chosen on training perturbations (``benchmarks/inner_cv.py --compare effect``)."""


class UnknownNameWarning(UserWarning):
    """A perturbation or gene that neither the model nor the KG knows (its rows are flagged)."""


@dataclass(frozen=True)
class FitConfig:
    """How :func:`fit` trains.

    Attributes:
        methods: Registered predictor names.
        seed: Seed of folds, combiners and LLM calibration samples.
        dataset: ``lincs`` lets CORE-Voting choose its neighbourhood size (50 or 100) on training data, as
            drug neighbourhoods are sparser; anything else keeps the defaults.
        llm: How LLM methods reach their model (default: the embedded model).
        calibration_queries: Held-out TRAIN queries the LLM methods score to fit their calibration.
        cache_path: Shared LLM response cache (default: :func:`coreperturb.llm.cache.default_response_cache`,
            in ``$COREPERTURB_CACHE_DIR`` or the user cache directory); the per-run result store is
            ``llm_cache.sqlite`` in the work directory (a private temporary directory without one).
        retry_failed: Re-run LLM rows stored with an error.
        reasoning_tokens: LLM methods first write a rationale of at most this many tokens, then answer
            (0 = answer at once).
        executor: ``local`` or ``ray`` (LLM calls over a Ray Data dataset).
        ray_address: Ray cluster address for ``ray``.
        ray_workers: Concurrent Ray workers for ``ray``.
        all_rows: Fit on every row, the test split too (``coreperturb fit --all-rows``: a model for
            prediction that uses all the data; never for a benchmark).
    """

    methods: tuple[str, ...] = ("core_voting",)
    seed: int = 0
    dataset: str = "perturbqa"
    llm: LLMSettings | None = None
    calibration_queries: int = 200
    cache_path: Path | None = None
    retry_failed: bool = False
    executor: str = "local"
    ray_address: str | None = None
    ray_workers: int = 2
    reasoning_tokens: int = 0
    all_rows: bool = False

    def __post_init__(self) -> None:
        if self.reasoning_tokens < 0:
            raise ValueError("reasoning_tokens must be >= 0")
        if not self.methods:
            raise ValueError("no methods given")
        for m in self.methods:
            PREDICTORS.get(m)  # raises a clear error for unknown names
        if self.executor not in ("local", "ray"):
            raise ValueError(f"unknown executor {self.executor!r}; use local or ray")


@dataclass
class FittedModels:
    """Every fitted predictor of a :func:`fit` call, with the KG and training rows they need to predict.

    Attributes:
        kg: The knowledge graph the models were fitted with.
        models: Fitted predictors keyed by ``(cell_line, task, method)``.
        train: The training rows (columns :data:`TRAIN_COLUMNS`): the evidence pools, and the context of
            transfer methods.
        config: How they were fitted.
        kg_recipe: How the KG was built (directory, sources, user files), recorded in model files.
        timings: Seconds per fitted model.
        warnings: Data warnings of the fit (:func:`data_warnings`), recorded in model files.
    """

    kg: KnowledgeGraph
    models: dict[tuple[str, str, str], Predictor]
    train: pd.DataFrame
    config: FitConfig = field(default_factory=FitConfig)
    kg_recipe: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def cell_lines(self) -> list[str]:
        """Cell lines with a fitted model, sorted."""
        return sorted({k[0] for k in self.models})

    @property
    def tasks(self) -> list[str]:
        """Tasks with a fitted model, sorted."""
        return sorted({k[1] for k in self.models})

    @property
    def methods(self) -> list[str]:
        """Fitted methods, in the order they were asked for."""
        return list(dict.fromkeys(k[2] for k in self.models))

    @property
    def thresholds(self) -> dict[tuple[str, str, str], float]:
        """Decision threshold of every model (chosen on training data)."""
        return {k: float(m.threshold_) for k, m in self.models.items()}

    @property
    def default_method(self) -> str:
        """The method ``predict`` uses when none is named: the first CORE method fitted, else the first."""
        for m in ("core_voting_transfer", "core_voting", "core_reasoning"):
            if m in self.methods:
                return m
        return self.methods[0]

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """A value derived from the (unchanging) models and training rows, computed once per key."""
        store: dict[str, Any] = self.__dict__.setdefault("_cache", {})
        if key not in store:
            store[key] = make()
        return store[key]

    def model(self, cell_line: str, task: str, method: str) -> Predictor:
        """The fitted predictor of one unit.

        Raises:
            CorePerturbError: Naming what is available instead.
        """
        key = (cell_line, task, method)
        if key not in self.models:
            have = ", ".join("/".join(k) for k in self.models)
            raise CorePerturbError(f"no fitted model for {'/'.join(key)}; the model holds {have}")
        return self.models[key]

    def training_rows(self, cell_line: str, task: str) -> pd.DataFrame:
        """Training rows of one unit."""
        t = self.train
        return t.loc[(t["cell_line"] == cell_line) & (t["task"] == task)].reset_index(drop=True)

    def context_rows(self, cell_line: str, task: str) -> pd.DataFrame:
        """Training rows of ``task`` in every other cell line (the context of transfer methods)."""
        t = self.train
        return t.loc[(t["cell_line"] != cell_line) & (t["task"] == task)].reset_index(drop=True)

    def training_perturbations(self, cell_line: str, task: str = "de") -> pd.Index:
        """Perturbations observed in the training rows of one unit (computed once)."""
        return self.cached(
            f"training_perturbations/{cell_line}/{task}",
            lambda: pd.Index(pd.unique(self.training_rows(cell_line, task)["perturbation"])),
        )

    def readout_genes(self, cell_line: str, task: str = "de") -> pd.Index:
        """Genes observed in the training rows of one unit (sorted; computed once)."""
        return self.cached(
            f"readout_genes/{cell_line}/{task}",
            lambda: pd.Index(sorted(pd.unique(self.training_rows(cell_line, task)["gene"]))),
        )


MIN_TRAIN_PERTURBATIONS = 20
"""Fewer training perturbations per (cell line, task) than this: too few to learn anything per gene."""
MIN_GENES_WITH_POSITIVES = 30
"""Fewer readout genes than this with at least :data:`MIN_POSITIVES_PER_GENE` positive training
perturbations: per-gene rankings cannot be learned (nor checked)."""
MIN_POSITIVES_PER_GENE = 3
MIN_KG_PERTURBATIONS = 10
"""Fewer training perturbations than this known to the KG: the evidence retrieval has nothing to relate."""


class TooLittleDataWarning(UserWarning):
    """A fit on less data than :data:`MIN_TRAIN_PERTURBATIONS` and friends: its predictions are weak."""


def data_warnings(train: pd.DataFrame, kg: KnowledgeGraph) -> list[str]:
    """One line per (cell line, task) below a documented minimum (training perturbations, genes with
    positives, perturbations the KG knows), with the numbers."""
    out = []
    for (line, task), rows in train.groupby(["cell_line", "task"], sort=True):
        perts = pd.unique(rows["perturbation"].astype(str))
        pos = rows.loc[rows["label"] == 1].groupby("gene").size()
        n_genes = int((pos >= MIN_POSITIVES_PER_GENE).sum())
        n_kg = int(kg.has_info(list(perts)).sum()) if len(perts) else 0
        short = []
        if len(perts) < MIN_TRAIN_PERTURBATIONS:
            short.append(f"{len(perts)} training perturbations (minimum {MIN_TRAIN_PERTURBATIONS})")
        if n_genes < MIN_GENES_WITH_POSITIVES:
            short.append(
                f"{n_genes} readout genes with >= {MIN_POSITIVES_PER_GENE} positive training perturbations "
                f"(minimum {MIN_GENES_WITH_POSITIVES})"
            )
        if n_kg < min(MIN_KG_PERTURBATIONS, len(perts)) or (len(perts) and n_kg == 0):
            short.append(
                f"{n_kg} of {len(perts)} training perturbations known to the KG (minimum {MIN_KG_PERTURBATIONS})"
            )
        if short:
            out.append(f"{line}/{task}: too little data: {'; '.join(short)}; predictions will be weak")
    return out


def _training_frame(table: QueryTable | pd.DataFrame, all_rows: bool = False) -> pd.DataFrame:
    frame = table.frame if isinstance(table, QueryTable) else table
    missing = [c for c in ("cell_line", "task", "perturbation", "gene", "label") if c not in frame.columns]
    if missing:
        raise CorePerturbError(f"training rows need columns {list(TRAIN_COLUMNS)}; missing {missing}")
    if "split" in frame.columns and not all_rows:
        frame = frame.loc[frame["split"].astype(str) == "train"]
    out = frame.loc[:, list(TRAIN_COLUMNS)].astype(
        {"cell_line": str, "task": str, "perturbation": str, "gene": str}
    )
    out["label"] = out["label"].astype(np.int8)
    if out.empty:
        raise CorePerturbError("no training rows (split == 'train') to fit on")
    return out.reset_index(drop=True)


def make_model(
    method: str,
    kg: KnowledgeGraph,
    config: FitConfig,
    backend: Backend | None = None,
    llm_progress: Progress | None = None,
    workdir: Path | None = None,
) -> Predictor:
    """An unfitted predictor configured as :func:`fit` (and the benchmark) configure it."""
    if method in LLM_METHODS:
        return make_predictor(
            method,
            kg,
            llm=backend or config.llm or LLMSettings(),
            cache_path=Path(workdir) / "llm_cache.sqlite" if workdir is not None else None,
            response_cache=config.cache_path,
            reasoning_tokens=config.reasoning_tokens,
            calibration_queries=config.calibration_queries,
            retry_failed=config.retry_failed,
            progress=llm_progress,
            seed=config.seed,
            executor=RayExecutor(config.llm or LLMSettings(), config.ray_workers, address=config.ray_address)
            if config.executor == "ray"
            else None,
        )
    if method == "gene_frequency":
        return make_predictor(method, kg)
    if method in ("core_voting", "core_voting_transfer") and config.dataset == "lincs":
        # drug neighbourhoods are sparser: let training CV choose the neighbourhood size
        return make_predictor(method, kg, seed=config.seed, top_k=(50, 100))
    return make_predictor(method, kg, seed=config.seed)


def fit(
    table: QueryTable | pd.DataFrame,
    kg: KnowledgeGraph,
    config: FitConfig | None = None,
    progress: Callable[[str], None] | None = None,
    llm_progress: Progress | None = None,
    workdir: Path | None = None,
    kg_recipe: dict[str, Any] | None = None,
) -> FittedModels:
    """Fit every method on the training rows of every (cell line, task).

    Args:
        table: Query table; rows with ``split == "train"`` are used (all rows if there is no split column).
        kg: Knowledge graph.
        config: Methods and settings (default: CORE-Voting).
        progress: Called with a short message before each model is fitted.
        llm_progress: Called with ``(done, total)`` while LLM methods score calibration queries.
        workdir: Where LLM methods keep their per-run result store (`llm_cache.sqlite`; default: a private
            temporary directory). Answers go to the shared response cache (`config.cache_path`).
        kg_recipe: How the KG was built, recorded in model files.

    Returns:
        The fitted models. Transfer methods get the other cell lines' training rows as context.
    """
    config = config or FitConfig()
    say = progress or (lambda msg: log.info(msg))
    train = _training_frame(table, config.all_rows)
    source = f"{table.source}: " if isinstance(table, QueryTable) and table.source else ""
    for (line, task), rows in train.groupby(["cell_line", "task"], sort=True):
        if rows["label"].nunique() < 2:
            raise CorePerturbError(
                f"{source}{line}/{task}: every training label is {int(rows['label'].iloc[0])}; nothing to learn "
                "(a fit needs both positive and negative pairs)"
            )
    notes = data_warnings(train, kg)
    for msg in notes:
        warnings.warn(msg, TooLittleDataWarning, stacklevel=2)
    models: dict[tuple[str, str, str], Predictor] = {}
    timings: dict[str, float] = {}
    backend: Backend | None = None
    for (line, task), rows in train.groupby(["cell_line", "task"], sort=True):
        rows = rows.reset_index(drop=True)
        for method in config.methods:
            if method in LLM_METHODS and config.calibration_queries > 0:
                say(
                    f"{line}/{task}: {method} calibration (scoring up to {config.calibration_queries} held-out "
                    "TRAIN queries)"
                )
            else:
                say(f"{line}/{task}: fitting {method}")
            t = time.perf_counter()
            if method in LLM_METHODS and backend is None:
                backend = make_backend(config.llm or LLMSettings())
            model = make_model(method, kg, config, backend, llm_progress, workdir)
            if isinstance(model, CoreVoting) and model.uses_context:
                context = train.loc[(train["cell_line"] != line) & (train["task"] == task)]
                model.fit(rows, context=context.reset_index(drop=True))
            else:
                model.fit(rows)
            models[(str(line), str(task), method)] = model
            timings[f"{line}/{task}/{method}"] = time.perf_counter() - t
    return FittedModels(kg, models, train, config, kg_recipe, timings, tuple(notes))


def _unit_queries(models: FittedModels, queries: pd.DataFrame) -> pd.DataFrame:
    q = queries.reset_index(drop=True)
    for col in ("perturbation", "gene"):
        if col not in q.columns:
            raise CorePerturbError(f"queries need a {col!r} column; found {list(map(str, q.columns))}")
    if "cell_line" not in q.columns:
        if len(models.cell_lines) != 1:
            raise CorePerturbError(
                f"queries need a 'cell_line' column: the model holds {', '.join(models.cell_lines)}"
            )
        q["cell_line"] = models.cell_lines[0]
    if "task" not in q.columns:
        q["task"] = "de"
    return q.astype({"cell_line": str, "task": str, "perturbation": str, "gene": str})


def _score_unit(model: Predictor, q: pd.DataFrame) -> dict[str, Any]:
    """Scores (and what else the method reports) of one unit's queries."""
    n = len(q)
    out: dict[str, Any] = {"from_cache": np.zeros(n, dtype=bool), "error": np.full(n, None, dtype=object)}
    if isinstance(model, CoreVoting):
        p, counts = model.predict_with_evidence(q)
        out["score"] = p
        out["n_pos_evidence"] = counts["n_pos_evidence"].to_numpy()
        out["n_neg_evidence"] = counts["n_neg_evidence"].to_numpy()
    elif isinstance(model, _LLMPredictor):
        st = model.score_table(q)
        out["score"] = st["score"].to_numpy(dtype=np.float64)
        out["from_cache"] = st["from_cache"].to_numpy(dtype=bool)
        out["error"] = st["error"].to_numpy()
        out["p_yes"] = st["p_yes"].to_numpy(dtype=np.float64)
        out["score_method"] = st["score_method"].to_numpy()
        out["rationale"] = st["rationale"].to_numpy()
    else:
        out["score"] = model.predict_proba(q)[:, 1].astype(np.float64)
    return out


def evidence_counts(kg: KnowledgeGraph, train: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """Positive / negative evidence counts per query (default CORE retrieval over the training rows)."""
    ev, _ = retrieve_evidence(kg, queries, ObservationPool.from_frame(train))
    return ev.summary()[["n_pos_evidence", "n_neg_evidence"]]


def predict(
    models: FittedModels,
    queries: pd.DataFrame,
    methods: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Score (perturbation, gene) queries with fitted models.

    Args:
        models: From :func:`fit` or :func:`coreperturb.model_files.load_model`.
        queries: Rows with ``perturbation`` and ``gene``; ``cell_line`` (optional when the model holds one
            cell line) and ``task`` (default ``de``). Any other columns (``label``, ``split``) are kept.
        methods: Methods to score with (default: every fitted method).
        progress: Called with a short message before each unit is scored.

    Returns:
        One row per (query, method), grouped by (cell line, task) then method, queries in input order
        within a group: the query columns, ``method``, ``score`` (P(positive); NaN where an LLM call
        failed), ``p_prior`` (the gene's rate in the unit's training rows: the gene-frequency score; NaN
        for a gene never observed there), ``effect`` (the shrunk log-odds lift of ``score`` over
        ``p_prior``, :func:`coreperturb.predictors.effect.effect_score`), ``n_pos_evidence`` /
        ``n_neg_evidence``, ``from_cache``, ``error``, and for LLM methods
        ``p_yes`` / ``score_method`` (raw answer probability and how it was read) and ``rationale`` (the
        model's reasoning with ``reasoning_tokens``; empty otherwise).
    """
    say = progress or (lambda msg: log.info(msg))
    q = _unit_queries(models, queries)
    methods = list(methods) if methods is not None else models.methods
    parts: list[pd.DataFrame] = []
    groups: dict[Any, Any] = q.groupby(["cell_line", "task"], sort=True).indices
    for key, idx in groups.items():
        line, task = str(key[0]), str(key[1])
        unit = q.iloc[np.sort(idx)].reset_index(drop=True)
        scored: list[tuple[str, dict[str, Any]]] = []
        counts: pd.DataFrame | None = None
        for method in methods:
            say(f"{line}/{task}: scoring {len(unit)} queries with {method}")
            res = _score_unit(models.model(str(line), str(task), method), unit)
            if "n_pos_evidence" in res:
                counts = pd.DataFrame(
                    {"n_pos_evidence": res["n_pos_evidence"], "n_neg_evidence": res["n_neg_evidence"]}
                )
            scored.append((method, res))
        train_rows = models.training_rows(str(line), str(task))
        if counts is None:
            counts = evidence_counts(models.kg, train_rows, unit)
        prior = gene_prior(train_rows, unit["gene"].to_numpy())
        n_ev = counts["n_pos_evidence"].to_numpy() + counts["n_neg_evidence"].to_numpy()
        for method, res in scored:
            score = np.asarray(res["score"], dtype=np.float64)
            part = unit.assign(
                method=method,
                score=score,
                p_prior=prior,
                effect=effect_score(score, prior, n_ev),
                n_pos_evidence=counts["n_pos_evidence"].to_numpy(),
                n_neg_evidence=counts["n_neg_evidence"].to_numpy(),
                from_cache=res["from_cache"],
                error=res["error"],
            )
            if "p_yes" in res:
                part["p_yes"] = res["p_yes"]
                part["score_method"] = res["score_method"]
                part["rationale"] = res["rationale"]
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def failed_methods(predictions: pd.DataFrame) -> list[str]:
    """One line per (cell line, task, method) whose every row failed (no score), naming the first error."""
    out = []
    keys = ["cell_line", "task", "method"]
    for key, grp in predictions.groupby(keys, sort=False, observed=True):
        if len(grp) and grp["score"].isna().all():
            errs = grp["error"].dropna() if "error" in grp.columns else pd.Series(dtype=object)
            why = str(errs.iloc[0]) if len(errs) else "no score"
            out.append(f"{'/'.join(map(str, key))} failed on all {len(grp)} queries: {why}")
    return out


def evaluate_predictions(
    predictions: pd.DataFrame,
    thresholds: dict[tuple[str, str, str], float] | None = None,
    n_bootstrap: int = 0,
    seed: int = 0,
    kg: KnowledgeGraph | None = None,
) -> pd.DataFrame:
    """Metrics of labelled predictions, per (cell line, task, method).

    Rows without a score (a failed LLM call) are left out; ``n_scored`` and ``n_errors`` say how many rows
    counted and how many failed.

    Args:
        predictions: From :func:`predict`, with a ``label`` column.
        thresholds: Decision threshold per (cell line, task, method) (default 0.5), e.g.
            :attr:`FittedModels.thresholds`.
        n_bootstrap: Bootstrap resamples over perturbations for 95% CIs.
        seed: Bootstrap seed.
        kg: If given, also count the test perturbations without KG information.

    Returns:
        Tidy frame: cell_line, task, method, metric, value, ci_low, ci_high.
    """
    if "label" not in predictions.columns:
        raise CorePerturbError("evaluate needs labelled predictions (a 'label' column)")
    thresholds = thresholds or {}
    rows: list[pd.DataFrame] = []
    keys = ["cell_line", "task", "method"]
    for key, grp in predictions.groupby(keys, sort=False, observed=True):
        line, task, method = (str(k) for k in key)
        score = grp["score"].to_numpy(dtype=np.float64)
        ok = np.isfinite(score)
        g = grp.loc[ok]
        # ranking metrics read "DE" hits: the direction task (up among DE pairs) has none
        has_effect = task == "de" and "p_prior" in g.columns and "effect" in g.columns
        m = evaluate(
            g["label"].to_numpy(),
            score[ok],
            g["gene"].to_numpy(),
            g["perturbation"].to_numpy(),
            threshold=thresholds.get((line, task, method), 0.5),
            n_bootstrap=n_bootstrap,
            seed=seed,
            prior=g["p_prior"].to_numpy(dtype=np.float64) if has_effect else None,
            effect=g["effect"].to_numpy(dtype=np.float64) if has_effect else None,
        )
        perts = sorted(pd.unique(grp["perturbation"].astype(str)))
        extra = {
            "n_test_perturbations": float(len(perts)),
            **(
                {"n_test_perturbations_without_kg": float((~kg.has_info(perts)).sum())}
                if kg is not None
                else {}
            ),
            "n_scored": float(ok.sum()),
            "n_errors": float((~ok).sum()),
        }
        m = pd.concat([m, pd.DataFrame({"metric": list(extra), "value": list(extra.values())})])
        m.insert(0, "method", method)
        m.insert(0, "task", task)
        m.insert(0, "cell_line", line)
        rows.append(m)
    return pd.concat(rows, ignore_index=True)


def llm_stats(models: FittedModels) -> dict[str, RunStats]:
    """Call / cache / token counters of the LLM methods, summed over cell lines and tasks."""
    out: dict[str, RunStats] = {}
    for (_, _, method), model in models.models.items():
        if isinstance(model, _LLMPredictor):
            out.setdefault(method, RunStats()).add(model.stats_)
    return out


# -- names ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameResolution:
    """How user-given names map to the names a model / KG knows.

    Attributes:
        names: Canonical name of each input (unknown names are kept as given).
        renamed: Input → canonical name, where only the case differed or a drug name was given.
        unknown: Inputs known neither to the model nor to the KG.
        suggestions: Unknown input → close known names.
    """

    names: list[str]
    renamed: dict[str, str]
    unknown: list[str]
    suggestions: dict[str, list[str]]

    def messages(self, what: str) -> list[str]:
        """One warning line per renamed or unknown name."""
        out = [f"{what} {a!r} read as {b!r}" for a, b in self.renamed.items()]
        for u in self.unknown:
            hint = self.suggestions.get(u)
            more = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
            if what == "gene":
                out.append(
                    f"gene {u!r} was never a readout in the model's training rows{more}; its rows are flagged "
                    "and get no score"
                )
            else:
                out.append(f"{what} {u!r} is unknown to the model and the KG{more}; its rows are flagged")
        return out

    def require_some(self, what: str) -> NameResolution:
        """Warn about renamed / unknown names (:class:`UnknownNameWarning`) and stop when none is known.

        Raises:
            CorePerturbError: Every name is unknown.
        """
        if self.names and len(self.unknown) == len(self.names):
            first = self.unknown[0]
            hint = self.suggestions.get(first)
            more = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
            where = "a readout gene of the model" if what == "gene" else "known to the model or its KG"
            raise CorePerturbError(
                f"none of the {len(self.names)} {what}s is {where} (e.g. {first!r}{more}); check the "
                "spelling (HGNC symbols" + (", DrugBank ids or drug names)" if what != "gene" else ")")
            )
        warn_names(self, what)
        return self


def resolve_names(
    names: Sequence[str], known: Sequence[str], aliases: dict[str, str] | None = None, suggest: int = 5
) -> NameResolution:
    """Map names to known ones: exact match, then a drug name / alias, then a case-insensitive unique match.

    HGNC symbols are case-sensitive identifiers in upper case, so ``fth1`` is read as ``FTH1`` (with a
    warning) when exactly one known name matches it ignoring case; otherwise it stays unknown. Unknown
    names get close matches (difflib) as suggestions for the first ``suggest`` of them.
    """
    import difflib

    aliases = aliases or {}
    known_set = set(map(str, known))
    upper: dict[str, list[str]] = {}
    for k in known_set:
        upper.setdefault(k.upper(), []).append(k)
    alias_upper: dict[str, list[str]] = {}
    for a, target in aliases.items():
        alias_upper.setdefault(str(a).upper(), []).append(str(target))
    out: list[str] = []
    renamed: dict[str, str] = {}
    unknown: list[str] = []
    for raw in names:
        n = str(raw).strip()
        if n in known_set:
            out.append(n)
            continue
        cands = sorted(set(upper.get(n.upper(), []) + alias_upper.get(n.upper(), [])))
        if len(cands) == 1:
            renamed[n] = cands[0]
            out.append(cands[0])
        else:
            unknown.append(n)
            out.append(n)
    suggestions: dict[str, list[str]] = {}
    if unknown:
        pool = sorted(known_set)
        for u in unknown[:suggest]:
            suggestions[u] = difflib.get_close_matches(u.upper(), pool, n=3, cutoff=0.75)
    return NameResolution(out, renamed, unknown, suggestions)


def known_perturbations(models: FittedModels) -> list[str]:
    """Every perturbation name the model can place: training perturbations, KG genes, KG drugs and
    compounds with a chemical structure."""
    names = set(models.train["perturbation"].astype(str))
    names.update(map(str, models.kg.genes))
    names.update(models.kg.compounds)
    return sorted(names)


def resolve_perturbations(models: FittedModels, names: Sequence[str]) -> NameResolution:
    """:func:`resolve_names` against the model's perturbations and KG (drug names map to their ids)."""
    aliases = {str(v): str(k) for k, v in models.kg.names.items()}
    return resolve_names(names, known_perturbations(models), aliases)


def resolve_genes(models: FittedModels, names: Sequence[str]) -> NameResolution:
    """:func:`resolve_names` against the readout genes of the model's training rows."""
    return resolve_names(names, sorted(pd.unique(models.train["gene"].astype(str))))


_ORF = r"C[0-9XY]+orf[0-9]+[A-Z]?"
GENE_SYMBOL = re.compile(
    rf"^(?:[A-Z][A-Z0-9]*|{_ORF})(?:-(?:[A-Z0-9]+|{_ORF}))*(?:_[0-9A-Z]+)?(?:\.[0-9]+)?$"
)
"""What a human gene symbol looks like (HGNC: upper-case letters and digits, ``-``-joined parts, ``C1orf50``
style open reading frames, ``_2`` suffixes, clone names such as ``AC118549.1``). KG files also name
pathogen genes (``Rv1280c``, ``SARS-coronavirus``), RNAs (``18S-rRNA``) and placeholders (``N/A``): those are
no candidates for a human knockdown."""


def _candidate_pool(models: FittedModels, cell_line: str) -> tuple[list[str], list[str]]:
    """``(candidates, dropped)``: :func:`candidate_perturbations` and the KG names it leaves out as no human
    gene symbol."""
    kg = models.kg
    trained = set(models.training_perturbations(cell_line, models.tasks[0]).astype(str))
    drugs = set(kg.compounds)  # drugs with targets and compounds with a chemical structure
    drug_model = sum(p in drugs for p in trained) > len(trained) / 2
    pool = sorted(drugs) if drug_model else [str(g) for g in kg.genes if str(g) not in drugs]
    cand = [p for p in pool if p not in trained]
    if not cand:
        return [], []
    info = kg.has_info(cand)
    cand = [p for p, ok in zip(cand, info, strict=True) if ok]
    if drug_model:
        return cand, []
    return [p for p in cand if GENE_SYMBOL.match(p)], [p for p in cand if not GENE_SYMBOL.match(p)]


def candidate_perturbations(models: FittedModels, cell_line: str) -> list[str]:
    """``--perturbations all``: every KG entity of the model's kind with KG information that is not a
    training perturbation of ``cell_line``: human gene symbols (:data:`GENE_SYMBOL`) of the KG's gene-level
    sources for genetic screens, drugs when most training perturbations are drugs."""
    return _candidate_pool(models, cell_line)[0]


def dropped_candidates(models: FittedModels, cell_line: str) -> list[str]:
    """KG names that :func:`candidate_perturbations` leaves out because they are no human gene symbol."""
    return _candidate_pool(models, cell_line)[1]


# -- genome-wide grids ------------------------------------------------------------------------------


def kg_coverage(kg: KnowledgeGraph, perturbations: Sequence[str]) -> np.ndarray:
    """Share of the KG's relations in which each perturbation (through its targets) has features."""
    if not kg.relations:
        return np.zeros(len(perturbations))
    return kg.coverage(perturbations).mean(axis=1)


@dataclass(frozen=True)
class GridPlan:
    """What :func:`predict_grid` scores: per cell line, the perturbations and the readout genes."""

    units: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]

    @property
    def n_perturbations(self) -> int:
        """Perturbations over all cell lines."""
        return sum(len(p) for _, p, _ in self.units)

    @property
    def n_pairs(self) -> int:
        """(perturbation, gene) pairs over all cell lines."""
        return sum(len(p) * len(g) for _, p, g in self.units)


def grid_plan(
    models: FittedModels,
    perturbations: Sequence[str] | None,
    genes: Sequence[str] | None = None,
    cell_lines: Sequence[str] | None = None,
) -> GridPlan:
    """Perturbations × genes per cell line.

    Args:
        models: Fitted models.
        perturbations: Canonical perturbation names (see :func:`resolve_perturbations`); ``None`` = every
            candidate of each cell line (:func:`candidate_perturbations`).
        genes: Readout genes (default: the genes observed in the cell line's training rows).
        cell_lines: Cell lines (default: all in the model).
    """
    lines = list(cell_lines) if cell_lines is not None else models.cell_lines
    units = []
    for line in lines:
        if line not in models.cell_lines:
            raise CorePerturbError(
                f"cell line {line!r} is not in the model; it holds {', '.join(models.cell_lines)}"
            )
        if perturbations is not None:
            perts = list(perturbations)
        else:
            perts, dropped = _candidate_pool(models, line)
            if dropped:
                warnings.warn(
                    f"{line}: {len(dropped)} KG names are no human gene symbol and are not candidates: "
                    f"{', '.join(dropped[:8])}{', ...' if len(dropped) > 8 else ''}",
                    UnknownNameWarning,
                    stacklevel=2,
                )
        g = list(genes) if genes is not None else list(models.readout_genes(line, "de"))
        units.append((line, tuple(map(str, perts)), tuple(map(str, g))))
    return GridPlan(tuple(units))


def _perturbation_flags(
    models: FittedModels, cell_line: str, perts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per perturbation: its flag and its KG coverage."""
    known = models.cached("known", lambda: set(known_perturbations(models)))
    trained = models.cached(
        f"trained/{cell_line}", lambda: set(models.training_perturbations(cell_line, "de").astype(str))
    )
    cov = kg_coverage(models.kg, list(perts))
    flags = np.array(
        [
            "unknown_perturbation"
            if p not in known
            else "training_perturbation"
            if p in trained
            else "no_kg_information"
            if c == 0
            else ""
            for p, c in zip(perts, cov, strict=True)
        ],
        dtype=object,
    )
    return flags, cov


def _gene_flags(models: FittedModels, cell_line: str, genes: Sequence[str]) -> np.ndarray:
    readouts = models.cached(f"readouts/{cell_line}", lambda: models.readout_genes(cell_line, "de"))
    return np.where(pd.Index(genes).isin(readouts), "", "unknown_gene").astype(object)


def _grid_scores(model: Predictor, perts: Sequence[str], genes: Sequence[str], task: str) -> dict[str, Any]:
    """Scores of every perts × genes pair (perturbation-major) of one unit."""
    if isinstance(model, CoreVoting):
        p, counts = model.predict_grid(perts, genes)
        return {
            "score": p,
            "n_pos_evidence": counts["n_pos_evidence"].to_numpy(),
            "n_neg_evidence": counts["n_neg_evidence"].to_numpy(),
        }
    q = pd.DataFrame(
        {
            "perturbation": np.repeat(np.asarray(perts, dtype=object), len(genes)),
            "gene": np.tile(np.asarray(genes, dtype=object), len(perts)),
            "task": task,
        }
    )
    return _score_unit(model, q)


def _gene_priors(models: FittedModels, cell_line: str, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the gene's DE prior and its up-rate among DE observations, both from the line's training
    rows (NaN for genes never observed, and up-rates NaN without a direction task)."""
    de = models.cached(
        f"prior/{cell_line}/de",
        lambda: pd.Series(
            gene_prior(models.training_rows(cell_line, "de"), models.readout_genes(cell_line, "de")),
            index=models.readout_genes(cell_line, "de"),
        ),
    )

    def up_rates() -> pd.Series:
        rows = models.training_rows(cell_line, "dir")
        if rows.empty:
            return pd.Series(dtype=np.float64)
        g = pd.Index(sorted(pd.unique(rows["gene"].astype(str))))
        return pd.Series(gene_prior(rows, g), index=g)

    up = models.cached(f"prior/{cell_line}/dir", up_rates)
    gi = pd.Index(genes)
    prior = de.reindex(gi).to_numpy(dtype=np.float64)
    if up.empty:
        return prior, np.full(len(gi), np.nan)
    # a readout gene never DE in training has no direction of its own: the line's overall up-rate
    dir_rows = models.training_rows(cell_line, "dir")
    up_rate = up.reindex(gi).fillna(float(dir_rows["label"].mean())).to_numpy(dtype=np.float64)
    return prior, np.where(np.isfinite(prior), up_rate, np.nan)


def _method_frames(
    models: FittedModels,
    cell_line: str,
    base: dict[str, np.ndarray],
    methods: Sequence[str],
    flag: np.ndarray,
    cov_rows: np.ndarray,
    score: Callable[[Predictor, str], dict[str, Any]],
) -> Iterator[pd.DataFrame]:
    """One frame of :data:`GRID_COLUMNS` per method for the pairs in ``base`` (cell_line, perturbation,
    gene); ``score(model, task)`` scores them with one fitted model. Rows of genes that were never a
    readout in training get NaN scores: the model knows nothing of them, not even a prior."""
    n = len(base["gene"])
    prior, up_rate = _gene_priors(models, cell_line, base["gene"])
    unknown_gene = ~np.isfinite(prior)
    for method in methods:
        de = score(models.model(cell_line, "de", method), "de")
        if "n_pos_evidence" not in de:
            q = pd.DataFrame({"perturbation": base["perturbation"], "gene": base["gene"]})
            c = evidence_counts(models.kg, models.training_rows(cell_line, "de"), q)
            de["n_pos_evidence"] = c["n_pos_evidence"].to_numpy()
            de["n_neg_evidence"] = c["n_neg_evidence"].to_numpy()
        p_up = np.full(n, np.nan)
        if (cell_line, "dir", method) in models.models:
            p_up = np.asarray(
                score(models.models[(cell_line, "dir", method)], "dir")["score"], dtype=np.float64
            )
        p_de = np.asarray(de["score"], dtype=np.float64).copy()
        p_de[unknown_gene] = np.nan
        p_up = p_up.copy()
        p_up[unknown_gene] = np.nan
        n_ev = np.asarray(de["n_pos_evidence"], dtype=np.float64) + np.asarray(de["n_neg_evidence"])
        yield pd.DataFrame(
            {
                **base,
                "method": np.full(n, method, dtype=object),
                "p_de": p_de,
                "p_up": p_up,
                "p_prior": prior,
                "effect": effect_score(p_de, prior, n_ev),
                "p_de_up": p_de * p_up,
                "p_de_down": p_de * (1 - p_up),
                "effect_up": effect_score(p_de * p_up, prior * up_rate, n_ev),
                "effect_down": effect_score(p_de * (1 - p_up), prior * (1 - up_rate), n_ev),
                "n_pos_evidence": np.asarray(de["n_pos_evidence"], dtype=np.int32),
                "n_neg_evidence": np.asarray(de["n_neg_evidence"], dtype=np.int32),
                "kg_coverage": np.asarray(cov_rows, dtype=np.float32),
                "flag": flag,
            }
        )


def score_pairs(
    models: FittedModels, cell_line: str, pairs: pd.DataFrame, methods: Sequence[str]
) -> Iterator[pd.DataFrame]:
    """Score (perturbation, gene) pairs of one cell line with every method: one frame per method with
    the columns of :data:`GRID_COLUMNS` (see :func:`predict_grid`)."""
    base = {
        "cell_line": np.full(len(pairs), cell_line, dtype=object),
        "perturbation": pairs["perturbation"].astype(str).to_numpy(dtype=object),
        "gene": pairs["gene"].astype(str).to_numpy(dtype=object),
    }
    perts = pd.Index(pd.unique(base["perturbation"]))
    pflag_p, cov_p = _perturbation_flags(models, cell_line, list(perts))
    pi = positions(perts, base["perturbation"])
    flag = _join_flags(pflag_p[pi], _gene_flags(models, cell_line, list(base["gene"])))
    q = pd.DataFrame(base)
    yield from _method_frames(
        models, cell_line, base, methods, flag, cov_p[pi], lambda m, task: _score_unit(m, q.assign(task=task))
    )


@dataclass(frozen=True)
class Ranking:
    """Keep the ``top`` rows of each perturbation (``per="perturbation"``: its genes) or of each gene
    (``per="gene"``: its perturbations), ranked by a column of :data:`RANK_BY`, highest first.

    Attributes:
        top: Rows kept per perturbation or gene (and cell line and method).
        rank_by: ``effect`` (default: the shrunk lift over the gene's prior), ``p_de``, ``up`` or ``down``
            (the lift of P(DE and up / down); needs a direction model).
        per: ``perturbation`` or ``gene``.
    """

    top: int
    rank_by: str = DEFAULT_RANK_BY
    per: str = "perturbation"

    def __post_init__(self) -> None:
        if self.top < 1:
            raise CorePerturbError("top must be >= 1")
        if self.rank_by not in RANK_BY:
            raise CorePerturbError(f"unknown rank_by {self.rank_by!r}; choose from {', '.join(RANK_BY)}")
        if self.per not in RANK_PER:
            raise CorePerturbError(f"unknown per {self.per!r}; choose from {', '.join(RANK_PER)}")


def rank_predictions(
    predictions: pd.DataFrame, top: int, rank_by: str = DEFAULT_RANK_BY, per: str = "perturbation"
) -> pd.DataFrame:
    """The ``top`` rows per perturbation (or per gene) of a prediction frame, best first.

    Args:
        predictions: Rows with the columns of :data:`GRID_COLUMNS` (from :func:`predict_grid` or a file
            that ``coreperturb predict`` wrote).
        top: Rows kept per (cell line, method, perturbation) or (cell line, method, gene).
        rank_by: ``effect`` | ``p_de`` | ``up`` | ``down`` (see :data:`RANK_BY`).
        per: ``perturbation`` (which genes does p change) or ``gene`` (which perturbations change g).

    Returns:
        The kept rows, grouped by perturbation (or gene) in name order, best first within a group; rows
        whose ranking column is NaN come last.
    """
    r = Ranking(top, rank_by, per)
    group = [c for c in ("cell_line", "method") if c in predictions.columns] + [r.per]
    order = (
        predictions.assign(_key=rank_key(predictions, r.rank_by))
        .sort_values(
            [*group, "_key"], ascending=[True] * len(group) + [False], kind="stable", na_position="last"
        )
        .index
    )
    out = predictions.loc[order]
    return out.groupby(group, sort=False).head(r.top).reset_index(drop=True)


def rank_key(predictions: pd.DataFrame, rank_by: str) -> np.ndarray:
    """The value a ranking sorts by (descending; NaN last). ``up`` / ``down`` rank by ``effect_up`` /
    ``effect_down`` among the rows whose predicted direction agrees (``p_up >= 0.5`` / ``< 0.5``): a gene
    predicted to go down is no answer to "what goes up", however unusual that is for the gene."""
    key = RANK_BY.get(rank_by)
    if key is None:
        raise CorePerturbError(f"unknown rank_by {rank_by!r}; choose from {', '.join(RANK_BY)}")
    if key not in predictions.columns:
        raise CorePerturbError(f"predictions have no {key!r} column to rank by")
    v = predictions[key].to_numpy(dtype=np.float64)
    if rank_by in ("up", "down"):
        p_up = predictions["p_up"].to_numpy(dtype=np.float64)
        agrees = p_up >= 0.5 if rank_by == "up" else p_up < 0.5
        v = np.where(agrees, v, np.nan)
    return v


def merge_top(frames: Iterable[pd.DataFrame], ranking: Ranking | None) -> Iterator[pd.DataFrame]:
    """Apply a :class:`Ranking` to a stream of chunks of whole perturbations.

    Per perturbation, each chunk is ranked as it comes. Per gene, a gene's best perturbations may come from
    any chunk: the running top rows of every gene are kept (memory: genes × ``top`` rows per method) and
    yielded at the end, one frame per method.
    """
    if ranking is None:
        yield from frames
        return
    if ranking.per == "perturbation":
        for f in frames:
            yield rank_predictions(f, ranking.top, ranking.rank_by, ranking.per)
        return
    best: dict[str, pd.DataFrame] = {}
    for f in frames:
        for method, part in f.groupby("method", sort=False):
            prev = best.get(str(method))
            both = part if prev is None else pd.concat([prev, part], ignore_index=True)
            best[str(method)] = rank_predictions(both, ranking.top, ranking.rank_by, ranking.per)
    yield from best.values()


def predict_grid(
    models: FittedModels,
    plan: GridPlan,
    methods: Sequence[str] | None = None,
    pairs_per_chunk: int = 250_000,
    top: int | Ranking | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[pd.DataFrame]:
    """Score every perturbation × gene of a plan, chunk by chunk (memory bounded by ``pairs_per_chunk``).

    Args:
        models: Fitted models.
        plan: From :func:`grid_plan`.
        methods: Methods (default: :attr:`FittedModels.default_method`).
        pairs_per_chunk: Pairs scored at once (whole perturbations per chunk).
        top: Keep only the best rows: a :class:`Ranking`, or N = the N genes per perturbation with the
            highest ``effect``.
        progress: Called with ``(perturbations done, total)``.

    Yields:
        Frames with the columns of :data:`GRID_COLUMNS`: ``p_de`` = P(DE), ``p_up`` = P(up | DE) from the
        direction model (NaN without one), ``p_prior`` (the gene's training DE rate, the gene-frequency
        score), ``effect`` (shrunk log-odds lift of ``p_de`` over ``p_prior``), ``p_de_up`` / ``p_de_down``
        (P(DE and up / down)), ``effect_up`` / ``effect_down`` (their lifts over the gene's prior for the
        same event), evidence counts of the DE model, ``kg_coverage`` (share of KG relations that know the
        perturbation) and ``flag`` (``;``-joined: ``unknown_perturbation``, ``no_kg_information``,
        ``training_perturbation``, ``unknown_gene``; empty when nothing is off).
    """
    ranking = Ranking(top) if isinstance(top, int) else top
    methods = list(methods) if methods is not None else [models.default_method]
    check_ranking(models, ranking, methods)

    def chunks() -> Iterator[pd.DataFrame]:
        total = plan.n_perturbations
        done = 0
        for unit, lo, hi in grid_chunks(plan, pairs_per_chunk):
            line, perts, genes = plan.units[unit]
            yield from score_chunk(models, line, perts[lo:hi], genes, methods, ranking)
            done += hi - lo
            if progress is not None:
                progress(done, total)

    yield from merge_top(chunks(), ranking)


def top_predictions(
    models: FittedModels,
    perturbations: Sequence[str] | None = None,
    genes: Sequence[str] | None = None,
    top: int = 20,
    rank_by: str = DEFAULT_RANK_BY,
    per: str = "perturbation",
    cell_lines: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    pairs_per_chunk: int = 250_000,
) -> pd.DataFrame:
    """The ranked answer to "which genes does p change" (``per="perturbation"``) or "which perturbations
    change g" (``per="gene"``), as one frame.

    Args:
        models: Fitted models.
        perturbations: Names (resolved with :func:`resolve_perturbations`: case, drug names); ``None`` =
            every candidate perturbation of each cell line.
        genes: Readout genes (resolved with :func:`resolve_genes`); ``None`` = the line's readout genes.
        top: Rows kept per perturbation (or per gene).
        rank_by: ``effect`` | ``p_de`` | ``up`` | ``down`` (see :data:`RANK_BY`).
        per: ``perturbation`` or ``gene``.
        cell_lines: Cell lines (default: all in the model).
        methods: Methods (default: the model's CORE method).
        pairs_per_chunk: Pairs scored at once.

    Returns:
        The kept rows with the columns of :data:`GRID_COLUMNS`, best first within each group.

    Raises:
        CorePerturbError: No requested perturbation (or gene) is known.
    """
    perts = None
    if perturbations is not None:
        perts = resolve_perturbations(models, list(perturbations)).require_some("perturbation").names
    gs = None
    if genes is not None:
        gs = resolve_genes(models, list(genes)).require_some("gene").names
    plan = grid_plan(models, perts, gs, cell_lines)
    frames = list(predict_grid(models, plan, methods, pairs_per_chunk, Ranking(top, rank_by, per)))
    if not frames:
        return pd.DataFrame(columns=list(GRID_COLUMNS))
    return rank_predictions(pd.concat(frames, ignore_index=True), top, rank_by, per)


def check_ranking(models: FittedModels, ranking: Ranking | None, methods: Sequence[str]) -> None:
    """A direction ranking needs a direction model of every method and cell line it ranks."""
    if ranking is None or ranking.rank_by not in ("up", "down"):
        return
    missing = [
        f"{line}/{m}" for line in models.cell_lines for m in methods if (line, "dir", m) not in models.models
    ]
    if missing:
        raise CorePerturbError(
            f"ranking by {ranking.rank_by!r} needs a direction (dir) model; none for {', '.join(missing)} "
            "(fit with the dir task, or rank by effect or p_de)"
        )


def grid_chunks(plan: GridPlan, pairs_per_chunk: int) -> Iterator[tuple[int, int, int]]:
    """``(unit, lo, hi)``: whole perturbations ``lo:hi`` of ``plan.units[unit]``, about ``pairs_per_chunk``
    pairs each."""
    for u, (_, perts, genes) in enumerate(plan.units):
        step = max(1, pairs_per_chunk // max(len(genes), 1))
        for lo in range(0, len(perts), step):
            yield u, lo, min(lo + step, len(perts))


def score_chunk(
    models: FittedModels,
    cell_line: str,
    perturbations: Sequence[str],
    genes: Sequence[str],
    methods: Sequence[str],
    top: int | Ranking | None = None,
) -> Iterator[pd.DataFrame]:
    """Every ``perturbations × genes`` pair of one cell line, one frame per method (see :func:`score_pairs`);
    with ``top``, the best rows of the chunk by :func:`rank_predictions` (per gene, a superset of what the
    whole grid keeps: :func:`merge_top` makes the final cut)."""
    ranking = Ranking(top) if isinstance(top, int) else top
    perts = list(dict.fromkeys(map(str, perturbations)))
    genes = list(map(str, genes))
    pflag, cov = _perturbation_flags(models, cell_line, perts)
    gflag = _gene_flags(models, cell_line, genes)
    n_p, n_g = len(perts), len(genes)
    base = {
        "cell_line": np.full(n_p * n_g, cell_line, dtype=object),
        "perturbation": np.repeat(np.asarray(perts, dtype=object), n_g),
        "gene": np.tile(np.asarray(genes, dtype=object), n_p),
    }
    flag = _join_flags(np.repeat(pflag, n_g), np.tile(gflag, n_p))
    frames = _method_frames(
        models,
        cell_line,
        base,
        methods,
        flag,
        np.repeat(cov, n_g),
        lambda m, task: _grid_scores(m, perts, genes, task),
    )
    for out in frames:
        if ranking is not None:
            out = rank_predictions(out, ranking.top, ranking.rank_by, ranking.per)
        yield out


def _join_flags(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both = (a != "") & (b != "")
    out = np.where(a != "", a, b).astype(object)
    out[both] = a[both] + ";" + b[both]
    return out


def warn_names(resolution: NameResolution, what: str) -> None:
    """Emit :class:`UnknownNameWarning` for every renamed or unknown name."""
    for msg in resolution.messages(what):
        warnings.warn(msg, UnknownNameWarning, stacklevel=2)


__all__ = [
    "DEFAULT_RANK_BY",
    "GENE_SYMBOL",
    "GRID_COLUMNS",
    "MIN_TRAIN_PERTURBATIONS",
    "RANK_BY",
    "TRAIN_COLUMNS",
    "FitConfig",
    "FittedModels",
    "GridPlan",
    "NameResolution",
    "Ranking",
    "TooLittleDataWarning",
    "UnknownNameWarning",
    "candidate_perturbations",
    "check_ranking",
    "data_warnings",
    "dropped_candidates",
    "evaluate_predictions",
    "evidence_counts",
    "failed_methods",
    "fit",
    "grid_chunks",
    "grid_plan",
    "kg_coverage",
    "known_perturbations",
    "llm_stats",
    "make_model",
    "merge_top",
    "predict",
    "predict_grid",
    "rank_key",
    "rank_predictions",
    "resolve_genes",
    "resolve_names",
    "resolve_perturbations",
    "score_chunk",
    "score_pairs",
    "top_predictions",
    "warn_names",
]
