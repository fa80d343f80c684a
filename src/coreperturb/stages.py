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
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
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
    "n_pos_evidence",
    "n_neg_evidence",
    "kg_coverage",
    "flag",
)
"""Columns written by ``coreperturb predict`` (one row per cell line, perturbation, gene and method)."""


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
    """

    kg: KnowledgeGraph
    models: dict[tuple[str, str, str], Predictor]
    train: pd.DataFrame
    config: FitConfig = field(default_factory=FitConfig)
    kg_recipe: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)

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
        """Perturbations observed in the training rows of one unit."""
        return pd.Index(pd.unique(self.training_rows(cell_line, task)["perturbation"]))

    def readout_genes(self, cell_line: str, task: str = "de") -> pd.Index:
        """Genes observed in the training rows of one unit (sorted)."""
        return pd.Index(sorted(pd.unique(self.training_rows(cell_line, task)["gene"])))


def _training_frame(table: QueryTable | pd.DataFrame) -> pd.DataFrame:
    frame = table.frame if isinstance(table, QueryTable) else table
    missing = [c for c in ("cell_line", "task", "perturbation", "gene", "label") if c not in frame.columns]
    if missing:
        raise CorePerturbError(f"training rows need columns {list(TRAIN_COLUMNS)}; missing {missing}")
    if "split" in frame.columns:
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
    train = _training_frame(table)
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
    return FittedModels(kg, models, train, config, kg_recipe, timings)


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
        failed), ``n_pos_evidence`` / ``n_neg_evidence``, ``from_cache``, ``error``, and for LLM methods
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
        if counts is None:
            counts = evidence_counts(models.kg, models.training_rows(str(line), str(task)), unit)
        for method, res in scored:
            part = unit.assign(
                method=method,
                score=res["score"],
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
        m = evaluate(
            g["label"].to_numpy(),
            score[ok],
            g["gene"].to_numpy(),
            g["perturbation"].to_numpy(),
            threshold=thresholds.get((line, task, method), 0.5),
            n_bootstrap=n_bootstrap,
            seed=seed,
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
            out.append(f"{what} {u!r} is unknown to the model and the KG{more}; its rows are flagged")
        return out


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


def candidate_perturbations(models: FittedModels, cell_line: str) -> list[str]:
    """``--perturbations all``: every KG entity of the model's kind with KG information that is not a
    training perturbation of ``cell_line`` (genes for genetic screens, drugs when most training
    perturbations are drugs)."""
    kg = models.kg
    trained = set(models.training_perturbations(cell_line, models.tasks[0]).astype(str))
    drugs = set(kg.compounds)  # drugs with targets and compounds with a chemical structure
    drug_model = sum(p in drugs for p in trained) > len(trained) / 2
    pool = sorted(drugs) if drug_model else [str(g) for g in kg.genes if str(g) not in drugs]
    cand = [p for p in pool if p not in trained]
    if not cand:
        return []
    info = kg.has_info(cand)
    return [p for p, ok in zip(cand, info, strict=True) if ok]


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
        perts = list(perturbations) if perturbations is not None else candidate_perturbations(models, line)
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
    gene); ``score(model, task)`` scores them with one fitted model."""
    n = len(base["gene"])
    for method in methods:
        de = score(models.model(cell_line, "de", method), "de")
        if "n_pos_evidence" not in de:
            q = pd.DataFrame({"perturbation": base["perturbation"], "gene": base["gene"]})
            c = evidence_counts(models.kg, models.training_rows(cell_line, "de"), q)
            de["n_pos_evidence"] = c["n_pos_evidence"].to_numpy()
            de["n_neg_evidence"] = c["n_neg_evidence"].to_numpy()
        p_up = np.full(n, np.nan)
        if (cell_line, "dir", method) in models.models:
            p_up = score(models.models[(cell_line, "dir", method)], "dir")["score"]
        yield pd.DataFrame(
            {
                **base,
                "method": np.full(n, method, dtype=object),
                "p_de": np.asarray(de["score"], dtype=np.float64),
                "p_up": np.asarray(p_up, dtype=np.float64),
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


def predict_grid(
    models: FittedModels,
    plan: GridPlan,
    methods: Sequence[str] | None = None,
    pairs_per_chunk: int = 250_000,
    top: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[pd.DataFrame]:
    """Score every perturbation × gene of a plan, chunk by chunk (memory bounded by ``pairs_per_chunk``).

    Args:
        models: Fitted models.
        plan: From :func:`grid_plan`.
        methods: Methods (default: :attr:`FittedModels.default_method`).
        pairs_per_chunk: Pairs scored at once (whole perturbations per chunk).
        top: Keep only the ``top`` genes with the highest ``p_de`` per perturbation (and method).
        progress: Called with ``(perturbations done, total)``.

    Yields:
        Frames with the columns of :data:`GRID_COLUMNS`: ``p_de`` = P(DE), ``p_up`` = P(up | DE) from the
        direction model (NaN without one), evidence counts of the DE model, ``kg_coverage`` (share of KG
        relations that know the perturbation) and ``flag`` (``;``-joined: ``unknown_perturbation``,
        ``no_kg_information``, ``training_perturbation``, ``unknown_gene``; empty when nothing is off).
    """
    methods = list(methods) if methods is not None else [models.default_method]
    total = plan.n_perturbations
    done = 0
    for unit, lo, hi in grid_chunks(plan, pairs_per_chunk):
        line, perts, genes = plan.units[unit]
        yield from score_chunk(models, line, perts[lo:hi], genes, methods, top)
        done += hi - lo
        if progress is not None:
            progress(done, total)


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
    top: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Every ``perturbations × genes`` pair of one cell line, one frame per method (see :func:`score_pairs`);
    with ``top``, the ``top`` genes with the highest ``p_de`` per perturbation."""
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
        if top is not None:
            out = (
                out.sort_values(["perturbation", "p_de"], ascending=[True, False], kind="stable")
                .groupby("perturbation", sort=False)
                .head(top)
                .reset_index(drop=True)
            )
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
    "GRID_COLUMNS",
    "TRAIN_COLUMNS",
    "FitConfig",
    "FittedModels",
    "GridPlan",
    "NameResolution",
    "UnknownNameWarning",
    "candidate_perturbations",
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
    "predict",
    "predict_grid",
    "resolve_genes",
    "resolve_names",
    "resolve_perturbations",
    "score_chunk",
    "score_pairs",
    "warn_names",
]
