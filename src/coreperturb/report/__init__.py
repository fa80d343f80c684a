"""Reporting: run outputs (Parquet, AnnData, manifest) and the HTML / Markdown reports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from coreperturb._defaults import REPORT_TOP
from coreperturb._files import exclusive
from coreperturb.errors import CorePerturbError
from coreperturb.report._html import build_report
from coreperturb.report._outputs import to_anndata, write_run


def write_report(
    path: str | Path, top: int = REPORT_TOP, priors: pd.DataFrame | None = None
) -> tuple[Path, Path]:
    """The HTML and Markdown report of a benchmark run directory, or of prediction file(s) of ``predict``
    (``top`` rows per list; ``priors``: the model's gene priors, :func:`coreperturb.stages.readout_priors`,
    for the gene-frequency column). Returns the paths written.

    Raises:
        CorePerturbError: ``path`` does not exist or holds neither.
    """
    from coreperturb.report._prediction_report import build_prediction_report, is_benchmark_run

    path = Path(path)
    if not path.exists():
        raise CorePerturbError(f"{path}: no such file or directory")
    with exclusive(path if is_benchmark_run(path) else path.with_name(path.name + ".report"), "report"):
        if is_benchmark_run(path):
            return build_report(path)
        return build_prediction_report(path, top=top, priors=priors)


__all__ = ["build_report", "to_anndata", "write_report", "write_run"]
