"""The benchmark job: load data and KG, fit every method per (cell line, task), score test queries, evaluate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from coreperturb.data.io import PERTURBQA_LINES, load_perturbqa
from coreperturb.data.schema import QueryTable
from coreperturb.data.synthetic import write_synthetic
from coreperturb.evaluate.metrics import evaluate
from coreperturb.evidence.contrastive import ContrastiveEvidence
from coreperturb.graph.kg import KnowledgeGraph
from coreperturb.graph.sources import build_kg
from coreperturb.predictors.base import PREDICTORS, make_predictor
from coreperturb.predictors.core_voting import CoreVoting

log = logging.getLogger(__name__)
DEFAULT_METHODS: tuple[str, ...] = ("gene_frequency", "knn_retrieval", "core_voting")


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
        seed: Seed for synthetic data, folds and bootstrap.
    """

    data_dir: Path | None = None
    kg_dir: Path | None = None
    cell_lines: tuple[str, ...] | None = None
    tasks: tuple[str, ...] = ("de",)
    methods: tuple[str, ...] = DEFAULT_METHODS
    kg_sources: tuple[str, ...] | None = None
    n_bootstrap: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
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
        predictions: One row per test query with each method's score column.
        timings: Seconds per step.
        models: Fitted predictors keyed by (cell_line, task, method).
    """

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    models: dict[tuple[str, str, str], object] = field(default_factory=dict)
    kg: KnowledgeGraph | None = None


def resolve_inputs(config: BenchmarkConfig, workdir: Path) -> tuple[QueryTable, KnowledgeGraph]:
    """Load the query table and KG named by ``config`` (generating the synthetic default if needed)."""
    data_dir, kg_dir, lines = config.data_dir, config.kg_dir, config.cell_lines
    if data_dir is None:
        paths = write_synthetic(workdir / "synthetic_input", seed=config.seed)
        data_dir = paths.data_dir
        kg_dir = kg_dir or paths.kg_dir
        lines = lines or paths.cell_lines
    table = load_perturbqa(data_dir, lines or PERTURBQA_LINES, config.tasks)
    genes = pd.unique(pd.concat([table.frame["gene"], table.frame["perturbation"]]).astype(str))
    kg = build_kg(kg_dir, config.kg_sources, extra_genes=genes)
    return table, kg


def run_benchmark(
    config: BenchmarkConfig,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    inputs: tuple[QueryTable, KnowledgeGraph] | None = None,
) -> BenchmarkResult:
    """Run every method on every (cell line, task) and evaluate on the test split.

    Args:
        config: What to run.
        workdir: Where the synthetic default is written (a temp dir if ``None``).
        progress: Called with a short message before each step.
        inputs: Pre-loaded ``(table, kg)`` (skips loading).
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
    for line, task, sub in table.groups():
        train, test = sub.split("train"), sub.split("test")
        preds = test.astype({"cell_line": str, "task": str, "split": str}).copy()
        for method in config.methods:
            say(f"{line}/{task}: fitting {method}")
            t = time.perf_counter()
            model = (
                make_predictor(method, kg, seed=config.seed)
                if method != "gene_frequency"
                else make_predictor(method, kg)
            )
            model.fit(train)
            scores = model.predict_proba(test)[:, 1]
            timings[f"{line}/{task}/{method}"] = time.perf_counter() - t
            preds[method] = scores
            if isinstance(model, CoreVoting):
                ev, _ = model.evidence(test)
                summ = ev.summary()
                preds["n_pos_evidence"] = summ["n_pos_evidence"].to_numpy()
                preds["n_neg_evidence"] = summ["n_neg_evidence"].to_numpy()
            m = evaluate(
                test["label"].to_numpy(),
                scores,
                test["gene"].to_numpy(),
                test["perturbation"].to_numpy(),
                threshold=model.threshold_,
                n_bootstrap=config.n_bootstrap,
                seed=config.seed,
            )
            m.insert(0, "method", method)
            m.insert(0, "task", task)
            m.insert(0, "cell_line", line)
            metric_rows.append(m)
            models[(line, task, method)] = model
        pred_parts.append(preds)
    timings["total"] = time.perf_counter() - t0
    return BenchmarkResult(
        metrics=pd.concat(metric_rows, ignore_index=True),
        predictions=pd.concat(pred_parts, ignore_index=True),
        timings=timings,
        models=models,
        kg=kg,
    )


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


__all__ = [
    "DEFAULT_METHODS",
    "BenchmarkConfig",
    "BenchmarkResult",
    "explain_query",
    "resolve_inputs",
    "run_benchmark",
    "summary_table",
]
