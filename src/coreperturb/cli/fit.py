"""``coreperturb fit``: fit models on training rows and save a model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from coreperturb.cli import _options as o
from coreperturb.cli import _run_options as r
from coreperturb.cli._app import command, use_threads


@command()
@r.with_run_options
def fit(
    *,
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Model directory to write.")] = Path("model"),
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all-rows",
            help="Fit on every row, the test split of a --queries file too (for a model that predicts new "
            "perturbations with all the data; never for a benchmark).",
        ),
    ] = False,
    tasks: Annotated[
        str | None,
        typer.Option(
            help="de, dir or de,dir (default: every task present in the data; de for a --queries file without a "
            "task column)."
        ),
    ] = None,
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated predictors to fit: core_voting (default; with several lines it reads the "
            "other lines' screens, see --per-line), gene_frequency, knn_retrieval, llm_isolated, core_reasoning "
            "(core_voting_transfer: core_voting that refuses a single line)."
        ),
    ] = "core_voting",
    kg_store: o.KgStoreOpt = "embed",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing model directory.")
    ] = False,
    **options: Any,
) -> None:
    """Fit models on training rows and save them to a model directory for `coreperturb predict`.

    Uses the rows with split == train of every cell line and task (all rows of a --queries file without a
    split column). Saves OUT/model.json (versions, config, seed, KG hash, one entry per model),
    OUT/train.parquet (the evidence pool), OUT/estimators.npz (combiners and calibrators as arrays) and the KG
    (OUT/kg.npz + kg.json, or only its hash with --kg-store reference). Nothing is pickled.
    """
    from coreperturb._api import data_tasks, fit_to_directory
    from coreperturb.cli._render import note, say, steps

    opts = r.run_options(ctx, options["config_file"], "fit")
    use_threads(opts["threads"])
    config = r.benchmark_config(opts)
    if opts.get("tasks") is None:
        config = config.replace(tasks=data_tasks(config))
    with steps() as (step, tick):
        rep = fit_to_directory(
            config,
            opts["out"],
            kg_store=opts["kg_store"],
            overwrite=opts["overwrite"],
            on_step=step,
            llm_progress=tick,
            on_note=lambda split: note(split.message("--all-rows")),
        )
    models, out_dir = rep.models, rep.directory
    size = sum(p.stat().st_size for p in out_dir.iterdir()) / 1e6
    units = ", ".join("/".join(k) for k in models.models)
    say(
        f"fitted {units} on {len(models.train)} training rows ({models.kg.genes.size} KG genes, "
        f"{len(models.kg.relations)} relations) in {rep.seconds:.1f}s; wrote {out_dir} ({size:.1f} MB)"
    )
    drug = models.config.modality == "drug"
    what, means = ("DRUG1,DRUG2", " (DrugBank ids or drug names)") if drug else ("GENE1,GENE2", "")
    say(
        f"next: coreperturb predict --model-dir {out_dir} --perturbations {what} --out predictions.parquet{means}"
    )
