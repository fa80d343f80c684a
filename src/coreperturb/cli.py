"""Command-line interface: a thin layer over :mod:`coreperturb.pipeline`."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
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
from coreperturb._util import positions
from coreperturb.config import load_config_file
from coreperturb.data.io import write_query_table
from coreperturb.data.prepare import DEParams, labels_from_anndata
from coreperturb.errors import CorePerturbError
from coreperturb.llm.backends import LLMSettings
from coreperturb.pipeline import (
    DEFAULT_METHODS,
    BenchmarkConfig,
    context_rows,
    explain_context,
    explain_query,
    resolve_inputs,
    run_benchmark,
    summary_table,
)
from coreperturb.predictors.core_voting import CoreVoting, CoreVotingTransfer
from coreperturb.report import build_report, write_run

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
    console.print(f"[bold red]error:[/] {exc}")
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
        console.print(f"[{time.strftime('%H:%M:%S')}] {msg}")

    def tick_plain(done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1)) // 10 * 10
        if pct != last["pct"]:
            last["pct"] = pct
            console.print(f"[{time.strftime('%H:%M:%S')}]   {done}/{total} queries ({pct}%)")

    yield say_plain, tick_plain


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """CORE: Contrastive Organization of Relational Evidence."""
    if version:
        out_console.print(__version__)
        raise typer.Exit()
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


@app.command()
def benchmark(
    ctx: typer.Context,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML/YAML file with any of these options (underscored); flags given here win."
        ),
    ] = None,
    anndata: Annotated[
        bool,
        typer.Option(
            "--anndata", help="Also write predictions.h5ad (perturbations × genes, a layer per method)."
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Output directory (metrics.csv, predictions.parquet).")] = Path(
        "runs/benchmark"
    ),
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Directory of {cell_line}-{task}.csv files. Omit to run the synthetic demo."),
    ] = None,
    kg_dir: Annotated[
        Path | None, typer.Option(help="Directory of KG source files (go_annotations.tsv, ...).")
    ] = None,
    cell_lines: Annotated[
        str | None, typer.Option(help="Comma-separated cell lines (default: all present).")
    ] = None,
    task: Annotated[str, typer.Option(help="de, dir, or de,dir.")] = "de",
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated predictor names: gene_frequency, knn_retrieval, core_voting, "
            "core_voting_transfer (adds the other loaded cell lines' training rows as context), "
            "llm_isolated, core_reasoning."
        ),
    ] = ",".join(DEFAULT_METHODS),
    kg_sources: Annotated[
        str | None, typer.Option(help="Comma-separated KG sources (default: all whose files exist).")
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples over test perturbations for 95% CIs.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed for synthetic data, folds and bootstrap.")] = 0,
    dataset: Annotated[
        str,
        typer.Option(
            help="perturbqa ({cell_line}-{task}.csv files) or lincs (signature tables: --data-dir holds "
            "consensi-drugbank-binary.tsv and genes.tsv)."
        ),
    ] = "perturbqa",
    negatives_per_perturbation: Annotated[
        int, typer.Option(help="lincs: non-significant genes sampled per perturbation as negatives.")
    ] = 200,
    test_fraction: Annotated[float, typer.Option(help="lincs: share of perturbations held out.")] = 0.3,
    llm: Annotated[
        str, typer.Option(help="LLM backend for llm_isolated/core_reasoning: embedded, openai or vllm.")
    ] = "embedded",
    model: Annotated[
        str | None,
        typer.Option(help="Model name (openai/vllm) or GGUF path (embedded; default: bundled SmolLM2-135M)."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="LLM requests in flight.")] = 8,
    requests_per_second: Annotated[
        float | None, typer.Option(help="Cap on LLM request starts per second.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="LLM request timeout (s); retried with backoff.")] = 60.0,
    max_retries: Annotated[int, typer.Option(help="Retries per LLM request (timeouts, 429, 5xx).")] = 4,
    max_queries: Annotated[
        int | None,
        typer.Option(help="Score at most N test queries per cell line/task, sampled gene by gene."),
    ] = None,
    calibration_queries: Annotated[
        int, typer.Option(help="Held-out TRAIN queries scored by LLM methods to fit calibration.")
    ] = 200,
    cache: Annotated[
        Path | None, typer.Option(help="LLM response cache / result store (default: OUT/llm_cache.sqlite).")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Re-run only LLM rows that ended with an error.")
    ] = False,
    executor: Annotated[
        str,
        typer.Option(
            help="local, or ray: run the LLM calls over a Ray Data dataset (pip install 'coreperturb[ray]')."
        ),
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address, e.g. HEAD:6379 (default: a local Ray).")
    ] = None,
    ray_workers: Annotated[int, typer.Option(help="Concurrent Ray workers for --executor ray.")] = 2,
) -> None:
    """Fit each method on the train split and evaluate it on unseen test perturbations.

    Writes OUT/metrics.csv (cell_line, task, method, metric, value, ci_low, ci_high),
    OUT/predictions.parquet (one row per test query and method), examples.json and manifest.json
    (plus llm_details.parquet for LLM methods and predictions.h5ad with --anndata), and prints a summary.
    With no --data-dir it runs on a small synthetic benchmark with planted signal.

    LLM methods (llm_isolated, core_reasoning) cache every answer in OUT/llm_cache.sqlite: re-running the
    same command after an interruption resumes without repeating answered prompts; --retry-failed re-runs
    the rows that failed. Set the API key in $COREPERTURB_API_KEY (or $OPENAI_API_KEY).
    """
    try:
        if config_file is not None:
            # compare by name: typer may ship its own copy of click's ParameterSource enum
            given = {
                k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"
            }
            for key, value in load_config_file(config_file).items():
                if key not in given:
                    ctx.params[key] = value
        o = dict(ctx.params)
        out = Path(o["out"])
        if o["data_dir"] is not None and o["kg_dir"] is None:
            raise CorePerturbError("--kg-dir is required with --data-dir")
        config = BenchmarkConfig(
            data_dir=o["data_dir"],
            kg_dir=o["kg_dir"],
            cell_lines=_split(o["cell_lines"]),
            tasks=_split(o["task"]) or ("de",),
            methods=_split(o["methods"]) or DEFAULT_METHODS,
            kg_sources=_split(o["kg_sources"]),
            n_bootstrap=o["bootstrap"],
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
            max_queries=o["max_queries"],
            calibration_queries=o["calibration_queries"],
            cache_path=o["cache"],
            retry_failed=o["retry_failed"],
            executor=o["executor"],
            ray_address=o["ray_address"],
            ray_workers=o["ray_workers"],
        )
        out.mkdir(parents=True, exist_ok=True)
        with _progress() as (say, llm_progress):
            result = run_benchmark(config, workdir=out, progress=say, llm_progress=llm_progress)
        written = write_run(result, config, out, anndata=bool(o["anndata"]))
    except (CorePerturbError, ValueError, KeyError, ImportError) as exc:
        _fail(exc)
        return
    _print_table(summary_table(result.metrics), "test-split metrics")
    for method, st in result.llm_stats.items():
        console.print(
            f"{method}: {st.n_queries} queries, {st.n_calls} LLM calls, {st.n_cache_hits} cache hits, "
            f"{st.n_resumed} resumed, {st.n_errors} errors, {st.n_verbal} verbal-confidence scores, "
            f"{st.prompt_tokens} prompt + {st.completion_tokens} completion tokens"
            + (f"; errors by kind: {st.errors}" if st.errors else "")
        )
    console.print(f"wrote {', '.join(p.name for p in written)} to {out} in {result.timings['total']:.1f}s")


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
            console.print(f"{line}: {msg}")
    console.print(f"wrote {out} ({len(table)} rows) and {out.with_suffix('.de.csv')}")


@app.command()
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A benchmark output directory (metrics.csv, predictions.parquet).")
    ],
) -> None:
    """Write RUN_DIR/report.html (self-contained) and RUN_DIR/report.md: metrics with CIs, ROC / PR curves,
    reliability diagram, per-gene AUROC distributions, predicted vs true DE rate, example evidence."""
    try:
        with console.status("building the report"):
            html, md = build_report(run_dir)
    except (CorePerturbError, ValueError, KeyError, ImportError) as exc:
        _fail(exc)
        return
    console.print(f"wrote {html} and {md}")


@app.command()
def explain(
    perturbation: Annotated[str, typer.Option(help="Perturbation (gene symbol or drug id).")],
    gene: Annotated[str, typer.Option(help="Readout gene.")],
    data_dir: Annotated[
        Path | None, typer.Option(help="Directory of {cell_line}-{task}.csv files (default: synthetic).")
    ] = None,
    kg_dir: Annotated[Path | None, typer.Option(help="Directory of KG source files.")] = None,
    cell_line: Annotated[str | None, typer.Option(help="Cell line (default: the first present).")] = None,
    task: Annotated[str, typer.Option(help="de or dir.")] = "de",
    top: Annotated[int, typer.Option(help="Evidence rows per side.")] = 8,
    transfer: Annotated[
        bool,
        typer.Option(
            "--transfer",
            help="Fit core_voting_transfer: also use the other cell lines' training rows and show how the "
            "perturbation behaved there.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Show the positive and negative evidence for one (perturbation, gene), with the KG links behind it.

    The model is fitted on the training split of the cell line; the perturbation itself is left out of the
    evidence pool if it is a training perturbation. With --transfer every cell line in --data-dir is loaded,
    and the perturbation's training rows in the OTHER lines are shown and used as evidence.
    """
    import tempfile

    try:
        if data_dir is not None and kg_dir is None:
            raise CorePerturbError("--kg-dir is required with --data-dir")
        config = BenchmarkConfig(
            data_dir=data_dir,
            kg_dir=kg_dir,
            cell_lines=(cell_line,) if cell_line and not transfer else None,
            tasks=(task,),
            seed=seed,
        )
        with tempfile.TemporaryDirectory() as tmp, console.status("loading data and knowledge graph"):
            table, kg = resolve_inputs(config, Path(tmp))
        line = cell_line or table.cell_lines[0]
        if line not in table.cell_lines:
            raise CorePerturbError(f"cell line {line!r} not found; available: {', '.join(table.cell_lines)}")
        train = table.subset(line, task).split("train")
        train = train[train["perturbation"] != perturbation]
        model: CoreVoting
        if transfer:
            with console.status(f"fitting core_voting_transfer on {line}/{task}"):
                model = CoreVotingTransfer(kg, seed=seed).fit(train, context=context_rows(table, line, task))
        else:
            with console.status(f"fitting CORE-Voting on {line}/{task}"):
                model = CoreVoting(kg, seed=seed).fit(train)
        df, _, prob = explain_query(model, kg, perturbation, gene, top=top)
        ctx = explain_context(model, perturbation, gene, top=top) if transfer else None
    except (CorePerturbError, ValueError, KeyError) as exc:
        _fail(exc)
        return
    base = (
        model.pool_.gene_rate()[positions(model.pool_.genes, [gene])[0]]
        if gene in model.pool_.genes
        else float("nan")
    )
    out_console.print(
        f"[bold]{perturbation} → {gene}[/] ({line}, {task}): P(positive) = {prob:.3f}; gene base rate = {base:.3f}; "
        f"KG info for perturbation: {'yes' if kg.has_info([perturbation])[0] else 'no'}"
    )
    for side in ("positive", "negative"):
        part = df[df["evidence"] == side].drop(columns="evidence")
        label = "made the gene positive" if side == "positive" else "observed, gene not positive"
        _print_frame(part, f"{side} evidence: related perturbations that {label}")
    if ctx is not None:
        contexts, similar = ctx
        _print_frame(
            contexts,
            f"{perturbation} in the other cell lines (training rows; pair = {perturbation} → {gene})",
        )
        _print_frame(
            similar,
            f"{line} perturbations measured on {gene} that responded like {perturbation} in the other lines",
        )


def _print_frame(df: pd.DataFrame, title: str) -> None:
    table = Table(title=title)
    for c in df.columns:
        table.add_column(str(c), overflow="fold")
    for _, row in df.iterrows():
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.to_numpy()])
    out_console.print(table)


def run() -> None:  # pragma: no cover - console-script shim
    """Entry point that turns unexpected user errors into one line."""
    try:
        app()
    except CorePerturbError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    run()
