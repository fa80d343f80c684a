"""``coreperturb report``: HTML and Markdown reports of a benchmark run or of prediction files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coreperturb.cli._app import command, console
from coreperturb.cli._render import say
from coreperturb.report import write_report


@command()
def report(
    path: Annotated[
        Path,
        typer.Argument(
            help="A benchmark output directory (metrics.csv, predictions.parquet), or a prediction file / folder of "
            "`coreperturb predict`."
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
    with console.status("building the report"):
        html, md = write_report(path, top=top)
    say(f"wrote {html} and {md}")
