"""The benchmark job: load data and KG, fit every method per (cell line, task), score test queries, evaluate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from coreperturb.data.io import PERTURBQA_LINES, load_perturbqa
from coreperturb.data.schema import QueryTable
from coreperturb.data.signatures import load_lincs
from coreperturb.data.synthetic import write_synthetic
from coreperturb.errors import CorePerturbError
from coreperturb.evaluate.metrics import evaluate
from coreperturb.evidence.contrastive import ContrastiveEvidence, retrieve_evidence
from coreperturb.evidence.pool import ObservationPool
from coreperturb.graph.kg import KnowledgeGraph
from coreperturb.graph.sources import build_kg
from coreperturb.llm.backends import Backend, LLMSettings, make_backend
from coreperturb.llm.distributed import RayExecutor
from coreperturb.llm.runner import Progress, RunStats
from coreperturb.predictors.base import PREDICTORS, make_predictor
from coreperturb.predictors.core_voting import CoreVoting
from coreperturb.predictors.llm import LLM_METHODS, _LLMPredictor, stratified_by_gene

log = logging.getLogger(__name__)
DEFAULT_METHODS: tuple[str, ...] = ("gene_frequency", "knn_retrieval", "core_voting")
DATASETS: tuple[str, ...] = ("perturbqa", "lincs")
PREDICTION_COLUMNS: tuple[str, ...] = (
    "cell_line",
    "perturbation",
    "gene",
    "task",
    "method",
    "score",
    "label",
    "split",
    "n_pos_evidence",
    "n_neg_evidence",
    "from_cache",
    "error",
)


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to run.

    Attributes:
        data_dir: Directory of ``{cell_line}-{task}.csv`` files; ``None`` = generate the synthetic benchmark.
        kg_dir: Directory of KG source files; ``None`` with no ``data_dir`` = the synthetic KG.
        cell_lines: Cell lines to run (default: all four PerturbQA lines, or the synthetic ones).
        tasks: ``de`` and/or ``dir``.
        methods: Registered predictor names.
        kg_sources: KG sources (default: every built-in source whose file exists).
        n_bootstrap: Bootstrap resamples over test perturbations for 95% CIs (0 = none).
        seed: Seed for synthetic data, folds, bootstrap and (``lincs``) negative sampling and split.
        dataset: ``perturbqa`` (``{cell_line}-{task}.csv`` files) or ``lincs`` (signature tables turned into
            queries by :func:`coreperturb.data.signatures.load_lincs`; ``data_dir`` is the LINCS directory).
        negatives_per_perturbation: ``lincs`` only: non-significant genes sampled per perturbation.
        test_fraction: ``lincs`` only: share of perturbations held out as unseen test perturbations.
        llm: How to reach the LLM for ``llm_isolated`` / ``core_reasoning`` (default: the embedded model).
        max_queries: Score at most this many test queries per (cell line, task), sampled gene by gene so
            per-gene AUROC stays computable; every method is evaluated on the same sample.
        calibration_queries: Held-out TRAIN queries the LLM methods score to fit their calibration.
        cache_path: SQLite response cache / result store of the LLM methods (default: ``OUT/llm_cache.sqlite``).
        retry_failed: Re-run LLM rows stored with an error (otherwise a resumed run keeps them as they are).
        executor: ``local`` (async calls in-process) or ``ray`` (LLM calls over a Ray Data dataset).
        ray_address: Ray cluster address for ``ray`` (default: start / join a local one).
        ray_workers: Concurrent Ray workers for ``ray``.
    """

    data_dir: Path | None = None
    kg_dir: Path | None = None
    cell_lines: tuple[str, ...] | None = None
    tasks: tuple[str, ...] = ("de",)
    methods: tuple[str, ...] = DEFAULT_METHODS
    kg_sources: tuple[str, ...] | None = None
    n_bootstrap: int = 0
    seed: int = 0
    dataset: str = "perturbqa"
    negatives_per_perturbation: int = 200
    test_fraction: float = 0.3
    llm: LLMSettings | None = None
    max_queries: int | None = None
    calibration_queries: int = 200
    cache_path: Path | None = None
    retry_failed: bool = False
    executor: str = "local"
    ray_address: str | None = None
    ray_workers: int = 2

    def __post_init__(self) -> None:
        if self.executor not in ("local", "ray"):
            raise ValueError(f"unknown executor {self.executor!r}; use local or ray")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {DATASETS}")
        for m in self.methods:
            PREDICTORS.get(m)  # raises a clear error for unknown names
        bad = [t for t in self.tasks if t not in ("de", "dir")]
        if bad:
            raise ValueError(f"unknown task(s) {bad}; use de and/or dir")
        if not self.methods:
            raise ValueError("no methods given")


@dataclass
class BenchmarkResult:
    """Outputs of :func:`run_benchmark`.

    Attributes:
        metrics: Tidy frame (cell_line, task, method, metric, value, ci_low, ci_high).
        predictions: One row per (test query, method) with the columns of :data:`PREDICTION_COLUMNS`.
        timings: Seconds per step.
        models: Fitted predictors keyed by (cell_line, task, method).
        kg: The knowledge graph used.
        llm_stats: Call / cache / token counters per LLM method.
        llm_details: Per LLM row: raw ``p_yes``, ``score_method`` (logprobs / verbal), ``from_cache``, ``error``.
        examples: A few test queries with their contrastive evidence (for the report).
    """

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    models: dict[tuple[str, str, str], object] = field(default_factory=dict)
    kg: KnowledgeGraph | None = None
    llm_stats: dict[str, RunStats] = field(default_factory=dict)
    llm_details: pd.DataFrame | None = None
    examples: list[dict[str, object]] = field(default_factory=list)


def resolve_inputs(config: BenchmarkConfig, workdir: Path) -> tuple[QueryTable, KnowledgeGraph]:
    """Load the query table and KG named by ``config`` (generating the synthetic default if needed)."""
    data_dir, kg_dir, lines = config.data_dir, config.kg_dir, config.cell_lines
    if data_dir is None:
        paths = write_synthetic(workdir / "synthetic_input", seed=config.seed)
        data_dir = paths.lincs_dir if config.dataset == "lincs" else paths.data_dir
        kg_dir = kg_dir or paths.kg_dir
        lines = lines or paths.cell_lines
    if kg_dir is None:
        raise CorePerturbError("a KG directory is required when a data directory is given")
    assert data_dir is not None
    if config.dataset == "lincs":
        table, report = load_lincs(
            data_dir,
            negatives_per_perturbation=config.negatives_per_perturbation,
            test_fraction=config.test_fraction,
            seed=config.seed,
            tasks=config.tasks,
        )
        for line in report.lines():
            log.log(logging.WARNING if "dropped" in line else logging.INFO, "lincs: %s", line)
    else:
        table = load_perturbqa(data_dir, lines or PERTURBQA_LINES, config.tasks)
    genes = pd.unique(pd.concat([table.frame["gene"], table.frame["perturbation"]]).astype(str))
    kg = build_kg(kg_dir, config.kg_sources, extra_genes=genes)
    return table, kg


def run_benchmark(
    config: BenchmarkConfig,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    inputs: tuple[QueryTable, KnowledgeGraph] | None = None,
    llm_progress: Progress | None = None,
) -> BenchmarkResult:
    """Run every method on every (cell line, task) and evaluate on the test split.

    Args:
        config: What to run.
        workdir: Where the synthetic default is written (a temp dir if ``None``).
        progress: Called with a short message before each step.
        inputs: Pre-loaded ``(table, kg)`` (skips loading).
        llm_progress: Called with ``(done, total)`` while LLM methods score queries.
    """
    import tempfile

    say = progress or (lambda msg: log.info(msg))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if inputs is None:
        with tempfile.TemporaryDirectory() as tmp:
            say("loading data and building the knowledge graph")
            table, kg = resolve_inputs(config, Path(workdir or tmp))
    else:
        table, kg = inputs
    timings["load_and_kg"] = time.perf_counter() - t0
    metric_rows: list[pd.DataFrame] = []
    pred_parts: list[pd.DataFrame] = []
    models: dict[tuple[str, str, str], object] = {}
    llm_stats: dict[str, RunStats] = {}
    llm_parts: list[pd.DataFrame] = []
    examples: list[dict[str, object]] = []
    backend: Backend | None = None
    for line, task, sub in table.groups():
        train, test = sub.split("train"), sub.split("test")
        if config.max_queries is not None:
            test = stratified_by_gene(test, config.max_queries, config.seed).reset_index(drop=True)
        base = test.astype({"cell_line": str, "task": str, "split": str})[
            ["cell_line", "perturbation", "gene", "task", "label", "split"]
        ].reset_index(drop=True)
        test_perts = sorted(pd.unique(test["perturbation"].astype(str)))
        no_kg = int((~kg.has_info(test_perts)).sum())
        if no_kg:
            log.warning(
                "%s/%s: %d of %d test perturbations have no KG information (no target gene in the KG); "
                "their scores fall back to the gene prior",
                line,
                task,
                no_kg,
                len(test_perts),
            )
        unit_preds: list[pd.DataFrame] = []
        evidence_counts: pd.DataFrame | None = None
        for method in config.methods:
            say(f"{line}/{task}: fitting {method}")
            t = time.perf_counter()
            if method in LLM_METHODS:
                if backend is None:
                    backend = make_backend(config.llm or LLMSettings())
                model = make_predictor(
                    method,
                    kg,
                    llm=backend,
                    cache_path=config.cache_path or Path(workdir or ".") / "llm_cache.sqlite",
                    calibration_queries=config.calibration_queries,
                    retry_failed=config.retry_failed,
                    progress=llm_progress,
                    seed=config.seed,
                    executor=RayExecutor(
                        config.llm or LLMSettings(), config.ray_workers, address=config.ray_address
                    )
                    if config.executor == "ray"
                    else None,
                )
            elif method == "gene_frequency":
                model = make_predictor(method, kg)
            elif method == "core_voting" and config.dataset == "lincs":
                # drug neighbourhoods are sparser: let training CV choose the neighbourhood size
                model = make_predictor(method, kg, seed=config.seed, top_k=(50, 100))
            else:
                model = make_predictor(method, kg, seed=config.seed)
            if isinstance(model, CoreVoting) and model.uses_context:
                model.fit(train, context=context_rows(table, line, task))
            else:
                model.fit(train)
            scores = model.predict_proba(test)[:, 1]
            timings[f"{line}/{task}/{method}"] = time.perf_counter() - t
            part = base.assign(method=method, score=scores, from_cache=False, error=None)
            if isinstance(model, _LLMPredictor):
                st = model.last_scores_
                part["from_cache"] = st["from_cache"].to_numpy(dtype=bool)
                part["error"] = st["error"].to_numpy()
                llm_parts.append(
                    base[["cell_line", "task", "perturbation", "gene"]].assign(
                        method=method,
                        p_yes=st["p_yes"].to_numpy(),
                        score_method=st["score_method"].to_numpy(),
                        from_cache=st["from_cache"].to_numpy(dtype=bool),
                        error=st["error"].to_numpy(),
                    )
                )
                llm_stats.setdefault(method, RunStats()).add(model.stats_)
            if isinstance(model, CoreVoting):
                ev, _ = model.evidence(test)
                evidence_counts = ev.summary()[["n_pos_evidence", "n_neg_evidence"]]
                examples.extend(_examples(kg, base, scores, ev, model))
            unit_preds.append(part)
            m = evaluate(
                test["label"].to_numpy(),
                scores,
                test["gene"].to_numpy(),
                test["perturbation"].to_numpy(),
                threshold=model.threshold_,
                n_bootstrap=config.n_bootstrap,
                seed=config.seed,
            )
            m = pd.concat(
                [
                    m,
                    pd.DataFrame(
                        {
                            "metric": ["n_test_perturbations", "n_test_perturbations_without_kg"],
                            "value": [float(len(test_perts)), float(no_kg)],
                        }
                    ),
                ],
                ignore_index=True,
            )
            m.insert(0, "method", method)
            m.insert(0, "task", task)
            m.insert(0, "cell_line", line)
            metric_rows.append(m)
            models[(line, task, method)] = model
        if evidence_counts is None:
            evidence_counts = _evidence_counts(kg, train, test)
        for part in unit_preds:
            part["n_pos_evidence"] = evidence_counts["n_pos_evidence"].to_numpy()
            part["n_neg_evidence"] = evidence_counts["n_neg_evidence"].to_numpy()
            pred_parts.append(part[list(PREDICTION_COLUMNS)])
    timings["total"] = time.perf_counter() - t0
    return BenchmarkResult(
        metrics=pd.concat(metric_rows, ignore_index=True),
        predictions=pd.concat(pred_parts, ignore_index=True),
        timings=timings,
        models=models,
        kg=kg,
        llm_stats=llm_stats,
        llm_details=pd.concat(llm_parts, ignore_index=True) if llm_parts else None,
        examples=examples,
    )


def context_rows(table: QueryTable, line: str, task: str) -> pd.DataFrame:
    """Training rows of ``task`` in every cell line other than ``line`` (context for transfer methods)."""
    f = table.frame
    keep = (f["cell_line"].astype(str) != line) & (f["task"].astype(str) == task) & (f["split"] == "train")
    return f.loc[keep].reset_index(drop=True)


def _evidence_counts(kg: KnowledgeGraph, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Positive / negative evidence counts per test query (default CORE retrieval)."""
    ev, _ = retrieve_evidence(kg, test, ObservationPool.from_frame(train))
    return ev.summary()[["n_pos_evidence", "n_neg_evidence"]]


def _examples(
    kg: KnowledgeGraph,
    base: pd.DataFrame,
    scores: np.ndarray,
    ev: ContrastiveEvidence,
    model: CoreVoting,
    n: int = 3,
) -> list[dict[str, object]]:
    """A few test queries with their contrastive evidence (for the report): the best-scored true positives
    and the best-scored negative. For a model fitted with context, also the query's context evidence."""
    pos = np.flatnonzero(base["label"].to_numpy() == 1)
    neg = np.flatnonzero(base["label"].to_numpy() == 0)
    pick = list(pos[np.argsort(-scores[pos])][: n - 1]) + list(neg[np.argsort(-scores[neg])][:1])
    out: list[dict[str, object]] = []
    for i in pick:
        table = ev.for_query(int(i), kg=kg, top=5, paths=1)
        extra: dict[str, object] = {}
        if model.context_ is not None:
            contexts, similar = explain_context(
                model, str(base["perturbation"].iat[i]), str(base["gene"].iat[i]), top=5
            )
            extra = {
                "context": contexts.round(4).to_dict(orient="records"),
                "context_evidence": similar.round(4).to_dict(orient="records"),
            }
        out.append(
            {
                "method": model.name,
                "cell_line": str(base["cell_line"].iat[i]),
                "task": str(base["task"].iat[i]),
                "perturbation": str(base["perturbation"].iat[i]),
                "gene": str(base["gene"].iat[i]),
                "label": int(base["label"].to_numpy()[i]),
                "score": float(scores[i]),
                "evidence": table.round(4).to_dict(orient="records"),
                **extra,
            }
        )
    return out


def summary_table(
    metrics: pd.DataFrame,
    names: Sequence[str] = (
        "macro_per_gene_auroc",
        "auroc",
        "auprc",
        "f1",
        "ece",
        "pred_pos_rate",
        "true_pos_rate",
    ),
) -> pd.DataFrame:
    """Wide view: one row per (cell_line, task, method), a column per metric; plus a MEAN row per method."""
    wide = metrics[metrics["metric"].isin(names)].pivot_table(
        index=["cell_line", "task", "method"], columns="metric", values="value", sort=False
    )[list(names)]
    mean = wide.groupby(level=["task", "method"], sort=False).mean()
    mean.index = pd.MultiIndex.from_tuples([("MEAN", t, m) for t, m in mean.index], names=wide.index.names)
    return pd.concat([wide, mean]) if wide.index.get_level_values(0).nunique() > 1 else wide


def explain_query(
    model: CoreVoting, kg: KnowledgeGraph, perturbation: str, gene: str, top: int = 8
) -> tuple[pd.DataFrame, ContrastiveEvidence, float]:
    """Evidence table and predicted probability for one (perturbation, gene) with a fitted CORE-Voting model."""
    q = pd.DataFrame({"perturbation": [perturbation], "gene": [gene]})
    ev, sims = model.evidence(q)
    prob = float(model.predict_proba(q)[0, 1])
    return ev.for_query(0, kg=kg, sims=sims, top=top), ev, prob


def explain_context(
    model: CoreVoting, perturbation: str, gene: str, top: int = 8
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Context evidence (other cell lines) for one query of a model fitted with context.

    Returns:
        ``(contexts, similar)`` as in :meth:`ContextEvidence.for_query`.

    Raises:
        ValueError: The model was fitted without context rows.
    """
    if model.context_ is None:
        raise ValueError("the model was fitted without context rows (use core_voting_transfer)")
    return model.context_.for_query(perturbation, gene, model.pool_, top=top)


__all__ = [
    "DEFAULT_METHODS",
    "BenchmarkConfig",
    "BenchmarkResult",
    "context_rows",
    "explain_context",
    "explain_query",
    "resolve_inputs",
    "run_benchmark",
    "summary_table",
]
