"""``coreperturb benchmark``: fit (train split) → predict (test split) → evaluate, written to a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from coreperturb._defaults import DEFAULT_METHODS
from coreperturb.cli import _run_options as r
from coreperturb.cli._app import command, fail, use_threads

MethodsOpt = Annotated[
    str,
    typer.Option(
        help="Comma-separated predictor names: gene_frequency, knn_retrieval, core_voting (with several lines it "
        "reads the other lines' training rows, see --per-line), core_voting_transfer (the same, refusing a single "
        "line), llm_isolated, core_reasoning."
    ),
]
_DEFAULT_METHODS = ",".join(DEFAULT_METHODS)
MaxQueriesOpt = Annotated[
    int | None,
    typer.Option(
        help="Score at most N test queries per cell line/task, sampled gene by gene: genes with both classes in "
        "random order, up to 20 queries each with at least one positive and one negative (so the positive rate "
        "differs from the test split's; per-gene AUROC needs genes, not rows: about N/20). A warning says when "
        "fewer than 30 genes have both classes."
    ),
]


@command()
@r.with_run_options
def benchmark(
    *,
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Output directory (metrics.csv, predictions.parquet).")] = Path(
        "runs/benchmark"
    ),
    anndata: Annotated[
        bool,
        typer.Option(
            "--anndata", help="Also write predictions.h5ad (perturbations × genes, a layer per method)."
        ),
    ] = False,
    tasks: Annotated[str | None, typer.Option(help="de, dir, or de,dir (default: de).")] = None,
    methods: MethodsOpt = _DEFAULT_METHODS,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples over test perturbations for 95% CIs.")
    ] = 0,
    max_queries: MaxQueriesOpt = None,
    save_model_dir: Annotated[
        Path | None,
        typer.Option("--save-model", help="Also save the fitted models here (as `coreperturb fit` does)."),
    ] = None,
    **options: Any,
) -> None:
    """Fit each method on the train split and evaluate it on unseen test perturbations.

    Exactly fit (train split) → predict (test split) → evaluate. Writes OUT/metrics.csv (cell_line, task,
    method, metric, value, ci_low, ci_high), OUT/predictions.parquet (one row per test query and method),
    examples.json and manifest.json (plus llm_details.parquet for LLM methods and predictions.h5ad with
    --anndata), and prints a summary. With no --data-dir / --queries it runs on a small synthetic benchmark
    with planted signal.

    LLM methods (llm_isolated, core_reasoning) keep every answer in a response cache shared by all runs
    (--response-cache; default in $COREPERTURB_CACHE_DIR or the user cache directory) and every scored row in
    OUT/llm_cache.sqlite: re-running after an interruption resumes, and a run into another --out asks no
    answered prompt again; --retry-failed re-runs the rows that failed. --reasoning-tokens N makes the model
    explain itself before answering (rationales in OUT/llm_details.parquet). Rows whose LLM call failed get no
    score and are left out of the metrics (n_scored / n_errors); a method that failed on every query makes the
    command exit with status 1. Set the API key in $COREPERTURB_API_KEY (or $OPENAI_API_KEY).
    """
    from coreperturb._model_files import save_model
    from coreperturb._pipeline import run_benchmark
    from coreperturb.cli._render import note, print_metrics, say, steps
    from coreperturb.report import write_run
    from coreperturb.report._summary import GENOME_METRICS, missing_metrics, summary_table

    opts = r.run_options(ctx, options["config_file"], "benchmark")
    use_threads(opts["threads"])
    config = r.benchmark_config(opts)
    out_dir = Path(opts["out"])
    out_dir.mkdir(parents=True, exist_ok=True)
    with steps() as (step, tick):
        result = run_benchmark(config, workdir=out_dir, on_step=step, llm_progress=tick)
    written = write_run(result, config, out_dir, anndata=bool(opts["anndata"]))
    if opts["save_model_dir"] is not None and result.fitted is not None:
        written.append(save_model(result.fitted, opts["save_model_dir"], overwrite=True))
    print_metrics(summary_table(result.metrics), "test-split metrics (among the benchmark's asked pairs)")
    genome = summary_table(result.metrics[result.metrics["task"] == "de"], GENOME_METRICS)
    if not genome.empty:
        print_metrics(genome, "over the genome (test perturbations whose DE lists are whole)")
    for line in [*missing_metrics(result.metrics), *result.warnings]:
        note(line)
    if result.fitted is not None:
        from coreperturb.cli._render import evidence_line

        cross = evidence_line(result.fitted, result.fitted.cell_lines)
        if cross:
            say(f"{cross} (--per-line: each line's own screen only, the PerturbQA paper's protocol)")
    for method, st in result.llm_stats.items():
        say(f"{method}: {st.summary()}")
    say(f"wrote {', '.join(p.name for p in written)} to {out_dir} in {result.timings['total']:.1f}s")
    if result.failures:
        more = f" (and {len(result.failures) - 1} more)" if len(result.failures) > 1 else ""
        fail(result.failures[0] + more, code=1)
