"""The benchmark job: load data and KG, then fit (train split) → predict (test split) → evaluate.

The stages themselves live in :mod:`coreperturb.stages`; this module only loads inputs and composes them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from coreperturb._config import DEFAULT_METHODS, BenchmarkConfig
from coreperturb._deprecation import keyword_options, renamed_options
from coreperturb.data._io import load_perturbqa, present_cell_lines, read_query_table, table_tasks
from coreperturb.data._schema import QueryTable, combine_tables
from coreperturb.data._signatures import load_lincs
from coreperturb.data._synthetic import write_synthetic
from coreperturb.errors import CorePerturbError
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.graph._sources import available_sources, build_kg_from_recipe
from coreperturb.report._examples import benchmark_examples
from coreperturb.stages import FittedModels, evaluate_predictions, fit, predict
from coreperturb.stages._predicting import failed_methods, llm_stats
from coreperturb.stages._queries import (
    held_out_queries,
    llm_plan,
    sample_warnings,
)

if TYPE_CHECKING:  # the LLM layer loads only for LLM methods
    from coreperturb._util import Progress
    from coreperturb.llm._runner import RunStats

log = logging.getLogger(__name__)
PREDICTION_COLUMNS: tuple[str, ...] = (
    "cell_line",
    "perturbation",
    "gene",
    "task",
    "method",
    "score",
    "score_sample",
    "label",
    "split",
    "p_prior",
    "p_prior_sample",
    "excess",
    "effect",
    "n_pos_evidence",
    "n_neg_evidence",
    "on_target",
    "call",
    "from_cache",
    "error",
)


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
        llm_details: Per LLM row: raw ``p_yes``, ``score_method`` (logprobs / verbal), ``from_cache``, ``error``
            and ``rationale`` (with ``reasoning_tokens``).
        examples: A few test queries with their contrastive evidence (for the report).
        failures: One line per (cell line, task, method) that failed on every query (no score at all).
        fitted: The fitted models (save them with :func:`coreperturb.save_model`).
        warnings: Why some metrics mean little (:func:`sample_warnings`: a sample too small for per-gene
            AUROC); shown under the summary and in the report.
    """

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    models: dict[tuple[str, str, str], object] = field(default_factory=dict)
    kg: KnowledgeGraph | None = None
    llm_stats: dict[str, RunStats] = field(default_factory=dict)
    llm_details: pd.DataFrame | None = None
    examples: list[dict[str, object]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    fitted: FittedModels | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Inputs:
    """A loaded query table, its KG and how that KG was built (recorded in model files)."""

    table: QueryTable
    kg: KnowledgeGraph
    kg_recipe: dict[str, Any]


def data_tasks(config: BenchmarkConfig) -> tuple[str, ...]:
    """Every task present in the data named by ``config`` (what ``fit`` trains when no task is named): de,
    plus dir where its files / rows exist."""
    data = config.data
    if data.queries is not None:
        return tuple(sorted({t for q in data.queries for t in table_tasks(q)}))
    if data.data_dir is None or config.fit.dataset == "lincs":
        return ("de", "dir")  # the synthetic default and LINCS signatures (up / down) hold both
    lines = data.cell_lines or tuple(present_cell_lines(data.data_dir, ("de",)))
    has_dir = all((data.data_dir / f"{line}-dir.csv").is_file() for line in lines)
    return ("de", "dir") if has_dir else ("de",)


def _own_table(config: BenchmarkConfig, *, for_fit: bool, beside: bool) -> QueryTable:
    """The ``queries`` tables (each with its own design), their lines and tasks those asked for (with a data
    directory beside them, the lines asked for may be the directory's)."""
    data = config.data
    assert data.queries is not None
    table = combine_tables(
        [read_query_table(q, cell_line=data.cell_line, for_fit=for_fit) for q in data.queries]
    )
    named = ", ".join(map(str, data.queries))
    lines = data.cell_lines
    keep = np.ones(len(table), dtype=bool)
    have = set(table.frame["cell_line"].astype(str))
    if lines:
        miss = sorted(set(lines) - have)
        if miss and not beside:
            raise CorePerturbError(f"{named}: no rows for cell line(s) {miss}; present: {sorted(have)}")
        if beside and not have & set(lines):
            raise CorePerturbError(
                f"{named}: none of its cell line(s) {sorted(have)} is among --cell-lines {list(lines)}"
            )
        keep &= table.frame["cell_line"].astype(str).isin(list(lines)).to_numpy()
    if data.tasks:
        keep &= table.frame["task"].astype(str).isin(list(data.tasks)).to_numpy()
    if not keep.any():
        raise CorePerturbError(f"{named}: no rows for task(s) {list(data.tasks)}")
    return table.keep(keep)


def _directory_table(
    config: BenchmarkConfig, data_dir: Path, lines: tuple[str, ...] | None, own: QueryTable | None
) -> QueryTable:
    """The data directory's screens (PerturbQA files or LINCS signatures); beside a user's table (``own``),
    the lines asked for that the table lacks (every line of the directory where none was named)."""
    data, seed = config.data, config.fit.seed
    if config.fit.dataset == "lincs":
        table, report = load_lincs(
            data_dir,
            negatives_per_perturbation=data.negatives_per_perturbation,
            test_fraction=data.test_fraction,
            seed=seed,
            tasks=data.tasks,
        )
        for line in report.lines():
            log.log(logging.WARNING if "dropped" in line else logging.INFO, "lincs: %s", line)
        return table
    present = present_cell_lines(data_dir, data.tasks)
    if own is not None and lines:
        mine = set(own.cell_lines)
        lines = tuple(x for x in lines if x not in mine)
        miss = sorted(set(lines) - set(present))
        if miss:
            raise CorePerturbError(
                f"cell line(s) {miss} neither in {own.source} ({sorted(mine)}) nor in {data_dir} "
                f"({', '.join(present)})"
            )
        if not lines:
            raise CorePerturbError(
                f"--cell-lines names no line of {data_dir} ({', '.join(present)}); name some of them, or leave "
                "out --data-dir"
            )
    return load_perturbqa(data_dir, list(lines or present), data.tasks)


def load_inputs(config: BenchmarkConfig, workdir: Path, *, for_fit: bool = False) -> Inputs:
    """Load the query table and KG named by ``config`` (generating the synthetic default if needed).

    Cell lines default to every line present: the ``{cell_line}-{task}.csv`` files of ``data_dir`` and the
    ``cell_line`` values of the ``queries`` files (one table of them all, each keeping its sampling design:
    :func:`coreperturb.data._schema.combine_tables`). With ``for_fit`` a ``queries`` file needs no test
    rows (and no ``split`` column: then every row is a training row).
    """
    data, kgc, seed, dataset = config.data, config.kg, config.fit.seed, config.fit.dataset
    data_dir, kg_dir, lines = data.data_dir, kgc.kg_dir, data.cell_lines
    if data_dir is None and data.queries is None:
        paths = write_synthetic(workdir / "synthetic_input", seed=seed)
        data_dir = paths.lincs_dir if dataset == "lincs" else paths.data_dir
        kg_dir = kg_dir or paths.kg_dir
        lines = lines or paths.cell_lines
    tables: list[QueryTable] = []
    if data.queries is not None:
        tables.append(_own_table(config, for_fit=for_fit, beside=data_dir is not None))
    if data_dir is not None:
        tables.append(_directory_table(config, data_dir, lines, tables[0] if tables else None))
    table = combine_tables(tables)
    genes = pd.unique(pd.concat([table.frame["gene"], table.frame["perturbation"]]).astype(str))
    sources = kgc.kg_sources
    if sources is None and kg_dir is not None:
        # resolved here and recorded, so that a saved model rebuilds exactly this KG (the default depends on
        # the data, e.g. drug structures for compound perturbations, and on whether RDKit is installed)
        sources = tuple(available_sources(kg_dir, genes))
    recipe: dict[str, Any] = {
        "kg_dir": str(Path(kg_dir).resolve()) if kg_dir is not None else None,
        "sources": list(sources) if sources is not None else None,
        "edges": [[n, str(Path(p).resolve())] for n, p in kgc.kg_edges],
        "gmt": [[n, str(Path(p).resolve())] for n, p in kgc.kg_gmt],
        "structures": [str(Path(p).resolve()) for p in kgc.kg_structures],
        "extra_genes": sorted(map(str, genes)),
    }
    return Inputs(table, build_kg_from_recipe(recipe), recipe)


def resolve_inputs(config: BenchmarkConfig, workdir: Path) -> tuple[QueryTable, KnowledgeGraph]:
    """``(table, kg)`` of :func:`load_inputs`."""
    inputs = load_inputs(config, workdir)
    return inputs.table, inputs.kg


@renamed_options(progress="on_step")
@keyword_options
def run_benchmark(
    config: BenchmarkConfig,
    *,
    workdir: Path | None = None,
    on_step: Callable[[str], None] | None = None,
    inputs: tuple[QueryTable, KnowledgeGraph] | Inputs | None = None,
    llm_progress: Progress | None = None,
) -> BenchmarkResult:
    """Fit every method on the train split, predict the test split, evaluate: the three public stages.

    Args:
        config: What to run.
        workdir: Where the synthetic default is written (a temp dir if ``None``).
        on_step: Called with a short message before each step (was ``progress``).
        inputs: Pre-loaded ``(table, kg)`` or :class:`Inputs` (skips loading).
        llm_progress: Called with ``(done, total)`` while LLM methods score queries.
    """
    import tempfile

    say = on_step or (lambda msg: log.info(msg))
    t0 = time.perf_counter()
    if inputs is None:
        with tempfile.TemporaryDirectory() as tmp:
            say("loading data and building the knowledge graph")
            inputs = load_inputs(config, Path(workdir or tmp))
    table, kg = (inputs.table, inputs.kg) if isinstance(inputs, Inputs) else inputs
    recipe = inputs.kg_recipe if isinstance(inputs, Inputs) else None
    timings: dict[str, float] = {"load_and_kg": time.perf_counter() - t0}
    max_queries, n_bootstrap, seed = config.evaluate.max_queries, config.evaluate.bootstrap, config.fit.seed
    llm = config.fit.llm_config
    if max_queries is not None and llm.calibration_queries > max_queries:
        # --max-queries bounds the whole LLM bill: the calibration queries too
        config = dataclasses.replace(
            config,
            fit=dataclasses.replace(
                config.fit, llm_config=dataclasses.replace(llm, calibration_queries=max_queries)
            ),
        )
    test = held_out_queries(table, max_queries, seed)
    for step in llm_plan(config, table, test):
        say(step)
    notes = sample_warnings(table, test, max_queries)  # said beside the metrics (BenchmarkResult.warnings)
    for msg in notes:
        log.info("%s", msg)
    for (line, task), grp in test.groupby(["cell_line", "task"], sort=True):
        perts = sorted(pd.unique(grp["perturbation"]))
        no_kg = int((~kg.has_info(perts)).sum())
        if no_kg:
            log.warning(
                "%s/%s: %d of %d test perturbations have no KG information (no target gene in the KG, no chemical structure); "
                "their scores fall back to the gene prior",
                line,
                task,
                no_kg,
                len(perts),
            )
    t = time.perf_counter()
    fitted = fit(
        table, kg, config.fit, on_step=say, llm_progress=llm_progress, workdir=workdir, kg_recipe=recipe
    )
    timings["fit"] = time.perf_counter() - t
    timings.update({f"fit/{k}": v for k, v in fitted.timings.items()})
    t = time.perf_counter()
    preds = predict(fitted, test, on_step=say)
    timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    say(
        f"evaluating ({n_bootstrap} bootstrap resamples over test perturbations)"
        if n_bootstrap
        else "evaluating"
    )
    metrics = evaluate_predictions(
        preds, fitted.thresholds, n_bootstrap=n_bootstrap, seed=seed, kg=kg, models=fitted
    )
    timings["evaluate"] = time.perf_counter() - t
    llm_rows = preds["p_yes"].notna() | preds["score_method"].notna() if "p_yes" in preds else None
    details = None
    if llm_rows is not None and llm_rows.any():
        details = preds.loc[
            llm_rows,
            [
                "cell_line",
                "task",
                "perturbation",
                "gene",
                "method",
                "p_yes",
                "score_method",
                "from_cache",
                "error",
                "rationale",
            ],
        ].reset_index(drop=True)
    examples = benchmark_examples(fitted, preds)
    timings["total"] = time.perf_counter() - t0
    return BenchmarkResult(
        metrics=metrics,
        predictions=preds[list(PREDICTION_COLUMNS)],
        timings=timings,
        models=dict(fitted.models),
        kg=kg,
        llm_stats=llm_stats(fitted),
        llm_details=details,
        examples=examples,
        failures=failed_methods(preds),
        warnings=notes,
        fitted=fitted,
    )


__all__ = [
    "DEFAULT_METHODS",
    "BenchmarkConfig",
    "BenchmarkResult",
    "Inputs",
    "data_tasks",
    "held_out_queries",
    "load_inputs",
    "resolve_inputs",
    "run_benchmark",
]
