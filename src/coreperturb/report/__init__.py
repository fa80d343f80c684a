"""Reporting: run outputs (Parquet, AnnData, manifest) and the HTML / Markdown report."""

from coreperturb.report.html import build_report, metrics_table
from coreperturb.report.outputs import build_manifest, config_hash, to_anndata, write_run

__all__ = ["build_manifest", "build_report", "config_hash", "metrics_table", "to_anndata", "write_run"]
