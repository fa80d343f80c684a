"""``coreperturb report``: HTML and Markdown reports of a benchmark run or of prediction files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coreperturb._defaults import REPORT_TOP
from coreperturb.cli._app import command, status


@command()
def report(
    *,
    path: Annotated[
        Path,
        typer.Argument(
            help="A benchmark output directory (metrics.csv, predictions.parquet), or a prediction file / folder of "
            "`coreperturb predict`."
        ),
    ],
    top: Annotated[int, typer.Option(min=1, help="Prediction reports: rows per list.")] = REPORT_TOP,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model-dir",
            help="Prediction reports: the model that made the predictions, so that the 'gene frequency alone "
            "would list' column is computed over every readout gene (a --top file holds only the listed genes).",
        ),
    ] = None,
) -> None:
    """Write an HTML (self-contained) and a Markdown report.

    For a benchmark run: RUN_DIR/report.html and report.md with metrics and CIs (MEAN rows over cell lines),
    ROC / PR curves, reliability diagram, per-gene AUROC distributions, predicted vs true DE rate and example
    evidence. For predictions (a .parquet / .csv of `coreperturb predict`, or a folder of them):
    NAME.report.html and NAME.report.md beside it with, per perturbation, its specific responders (by excess
    = p_de - p_prior, only those above the floor, with their calls; up and down with a direction model) beside
    what gene frequency alone would list (over every readout gene with --model-dir), per gene the
    perturbations that move it most, and a heatmap of the top perturbations x genes.
    """
    from coreperturb._model_files import load_model
    from coreperturb.cli._render import say
    from coreperturb.report import write_report
    from coreperturb.stages import readout_priors

    priors = None
    if model_dir is not None:
        with status(f"loading {model_dir}"):
            priors = readout_priors(load_model(model_dir))
    with status("building the report"):
        html, md = write_report(path, top=top, priors=priors)
    say(f"wrote {html} and {md}")
