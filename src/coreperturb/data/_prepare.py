"""From single-cell data to labels: per-perturbation DE vs control cells → the tidy query table.

For every perturbation (and cell line), each gene is tested against the control cells with a two-sided
Wilcoxon rank-sum test (scipy's Mann–Whitney U, as ``scanpy.tl.rank_genes_groups(method="wilcoxon")``),
p-values are Benjamini–Hochberg adjusted within the perturbation, and the log2 fold change is computed on
the de-logged means as scanpy does. A gene is DE when ``padj < max_padj`` and ``|log2FC| >= min_abs_lfc``;
its direction is the sign of the fold change. The significant genes then go through the same path as any
signature table (:func:`coreperturb.data._signatures.signatures_to_queries`): negatives sampled from the
non-DE genes, a seeded unseen-perturbation split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from coreperturb import _defaults as d
from coreperturb.data._schema import QueryTable
from coreperturb.data._signatures import SignatureReport, signatures_to_queries
from coreperturb.errors import CorePerturbError, DataValidationError, MissingDependencyError


@dataclass(frozen=True)
class DEParams:
    """Thresholds of the DE call.

    Attributes:
        max_padj: Benjamini–Hochberg adjusted p-value threshold.
        min_abs_lfc: Minimum absolute log2 fold change.
        min_cells: Perturbations with fewer cells are skipped (counted in the result).
    """

    max_padj: float = d.DE_MAX_PADJ
    min_abs_lfc: float = d.DE_MIN_ABS_LFC
    min_cells: int = d.DE_MIN_CELLS


def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def _looks_like_counts(x: np.ndarray) -> bool:
    sample = x[: min(len(x), 500)]
    return bool(np.all(sample >= 0) and np.allclose(sample, np.round(sample)) and sample.max(initial=0) > 30)


def log_normalise(x: np.ndarray, target_sum: float = 1e4) -> np.ndarray:
    """``log1p`` of counts scaled to ``target_sum`` per cell (scanpy's normalize_total + log1p)."""
    tot = x.sum(axis=1, keepdims=True)
    return np.log1p(x / np.maximum(tot, 1e-12) * target_sum)


def de_table(
    expr: np.ndarray, genes: pd.Index, groups: np.ndarray, control: str, params: DEParams
) -> tuple[pd.DataFrame, list[str]]:
    """Wilcoxon DE of every group vs the control group on log-normalised expression.

    Returns:
        Rows (perturbation, gene, log2fc, pval, padj, direction) for the DE genes, and the skipped groups.
    """
    ctrl = expr[groups == control]
    ctrl_mean = np.expm1(ctrl).mean(axis=0)
    rows = []
    skipped = []
    for g in sorted(set(groups.tolist()) - {control}):
        x = expr[groups == g]
        if len(x) < params.min_cells:
            skipped.append(str(g))
            continue
        p = stats.mannwhitneyu(x, ctrl, axis=0, alternative="two-sided").pvalue
        p = np.where(np.isnan(p), 1.0, p)
        padj = stats.false_discovery_control(p, method="bh")
        lfc = np.log2((np.expm1(x).mean(axis=0) + 1e-9) / (ctrl_mean + 1e-9))
        hit = (padj < params.max_padj) & (np.abs(lfc) >= params.min_abs_lfc)
        for j in np.flatnonzero(hit):
            rows.append(
                (
                    str(g),
                    str(genes[int(j)]),
                    float(lfc[j]),
                    float(p[j]),
                    float(padj[j]),
                    "up" if lfc[j] > 0 else "down",
                )
            )
    cols = ["perturbation", "gene", "log2fc", "pval", "padj", "direction"]
    return pd.DataFrame(rows, columns=cols), skipped


def labels_from_anndata(
    adata: Any,
    perturbation_key: str,
    control: str,
    *,
    cell_line_key: str | None = None,
    cell_line: str = "cells",
    layer: str | None = None,
    data: str = "auto",
    params: DEParams | None = None,
    negatives_per_perturbation: int = d.NEGATIVES_PER_PERTURBATION,
    test_fraction: float = d.PREPARE_TEST_FRACTION,
    seed: int = 0,
    source: str = "<anndata>",
) -> tuple[QueryTable, dict[str, SignatureReport], pd.DataFrame]:
    """DE and direction labels per perturbation vs control cells, as the tidy query table.

    Args:
        adata: An ``AnnData`` (cells × genes); perturbation labels in ``adata.obs[perturbation_key]``.
        perturbation_key: ``obs`` column naming each cell's perturbation.
        control: Value of that column for control cells (e.g. ``"non-targeting"``).
        cell_line_key: Optional ``obs`` column splitting cells into cell lines (tested separately).
        cell_line: Cell-line name when there is no ``cell_line_key``.
        layer: Use this layer instead of ``X``.
        data: ``counts`` (raw counts: log-normalised here), ``log`` (already log1p-normalised) or ``auto``.
        params: DE thresholds.
        negatives_per_perturbation: Non-DE genes sampled per perturbation as negatives.
        test_fraction: Share of perturbations held out as unseen test perturbations.
        seed: Seed of negative sampling and split.
        source: Name used in messages.

    Returns:
        The query table (tasks ``de`` and ``dir``), a report per cell line, and the full DE table.

    Raises:
        DataValidationError: missing keys, no control cells, or data that contradict ``data``.
    """
    params = params or DEParams()
    obs = adata.obs
    for key in [perturbation_key] + ([cell_line_key] if cell_line_key else []):
        if key not in obs.columns:
            raise DataValidationError(
                f"{source}: obs has no column {key!r}; available: {list(map(str, obs.columns))}"
            )
    if layer is not None and layer not in adata.layers:
        raise DataValidationError(f"{source}: no layer {layer!r}; available: {list(adata.layers.keys())}")
    if data not in ("auto", "counts", "log"):
        raise DataValidationError(f"data must be auto, counts or log, got {data!r}")
    x = _dense(adata.layers[layer] if layer else adata.X)
    if not np.isfinite(x).all():
        raise DataValidationError(f"{source}: expression contains NaN or infinite values")
    counts = _looks_like_counts(x)
    if data == "log" and counts:
        raise DataValidationError(
            f"{source}: data='log' was given but the matrix holds raw integer counts (max {x.max():.0f}); "
            "use data='counts' (or 'auto') to log-normalise them"
        )
    if data == "counts" and not np.allclose(x[:500], np.round(x[:500])):
        raise DataValidationError(
            f"{source}: data='counts' was given but the matrix is not integer counts (looks log-normalised); "
            "use data='log'"
        )
    if (x < 0).any() and data != "log":
        raise DataValidationError(
            f"{source}: negative values: scaled data cannot be tested; give counts or log1p data"
        )
    expr = log_normalise(x) if (data == "counts" or (data == "auto" and counts)) else x
    genes = pd.Index(adata.var_names.astype(str))
    pert = obs[perturbation_key].astype(str).to_numpy()
    lines = obs[cell_line_key].astype(str).to_numpy() if cell_line_key else np.full(len(pert), cell_line)
    universe = pd.DataFrame({"entrez_gene_id": genes, "symbol": genes})
    tables, reports, des = [], {}, []
    tables_design = None
    for line in sorted(set(lines.tolist())):
        m = lines == line
        if not (pert[m] == str(control)).any():
            values = set(pert[m].tolist())
            likely = likely_controls(values)
            hint = f"; did you mean --control {likely[0]!r}?" if likely else ""
            found = likely + sorted(values - set(likely))[: max(0, 8 - len(likely))]
            raise DataValidationError(
                f"{source}: no control cells ({perturbation_key} == {control!r}) in cell line {line!r}; "
                f"values include {found}{hint}"
            )
        de, skipped = de_table(expr[m], genes, pert[m], str(control), params)
        des.append(de.assign(cell_line=line))
        perts = sorted(set(pert[m].tolist()) - {str(control)} - set(skipped))
        if len(perts) < 2:
            raise DataValidationError(f"{source}: cell line {line!r} has fewer than 2 testable perturbations")
        # perturbations without any DE gene still contribute negatives: give them an empty signature
        sig = de.rename(columns={"perturbation": "perturbagen", "gene": "entrez_gene_id"})
        table, rep = signatures_to_queries(
            sig,
            universe,
            cell_line=line,
            negatives_per_perturbation=negatives_per_perturbation,
            test_fraction=test_fraction,
            seed=seed,
            source=source,
            perturbations=perts,
        )
        tables.append(table.frame)
        tables_design = table.design
        reports[line] = rep
    return (
        QueryTable(pd.concat(tables, ignore_index=True), source, design=tables_design),
        reports,
        pd.concat(des, ignore_index=True),
    )


def read_h5ad(path: Path) -> Any:
    """Read an AnnData file (``pip install 'coreperturb[anndata]'``).

    Raises:
        MissingDependencyError: anndata is not installed.
        CorePerturbError: The file is missing or no AnnData file.
    """
    try:
        import anndata as ad
    except ImportError:
        raise MissingDependencyError("prepare needs anndata: pip install 'coreperturb[anndata]'") from None
    if not Path(path).exists():
        raise CorePerturbError(f"{path}: file not found")
    try:
        return ad.read_h5ad(path)
    except (OSError, ValueError, KeyError) as exc:
        raise CorePerturbError(f"{path}: cannot be read as AnnData (.h5ad): {exc}") from None


CONTROL_WORDS = (
    "non-targeting",
    "nontargeting",
    "non_targeting",
    "control",
    "ctrl",
    "safe",
    "scramble",
    "nt",
)
"""Words that mark control guides in a perturbation column (for the hint of a wrong ``--control``)."""


def likely_controls(values: set[str]) -> list[str]:
    """Values of a perturbation column that look like controls, most cells' wording first (``non-targeting``
    before ``control``), at most three."""

    def rank(v: str) -> int:
        low = v.lower()
        for i, w in enumerate(CONTROL_WORDS):
            if low == w or (len(w) > 2 and w in low):
                return i
        return len(CONTROL_WORDS)

    hits = sorted((v for v in values if rank(v) < len(CONTROL_WORDS)), key=lambda v: (rank(v), v))
    return hits[:3]


__all__ = ["DEParams", "de_table", "labels_from_anndata", "log_normalise", "read_h5ad"]
