"""``coreperturb prepare``: DE / direction labels from single cells (AnnData) → the tidy query table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coreperturb import _defaults as d
from coreperturb.cli._app import command, status


@command()
def prepare(
    *,
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
    max_padj: Annotated[float, typer.Option(help="BH-adjusted p-value threshold.")] = d.DE_MAX_PADJ,
    min_abs_lfc: Annotated[float, typer.Option(help="Minimum |log2 fold change|.")] = d.DE_MIN_ABS_LFC,
    min_cells: Annotated[int, typer.Option(help="Skip perturbations with fewer cells.")] = d.DE_MIN_CELLS,
    negatives_per_perturbation: Annotated[
        int,
        typer.Option(
            help="Non-DE genes sampled per perturbation (the table's design: case_control); at least the gene "
            "count writes every gene (complete). The design is written beside OUT (OUT's stem + '.design.json')."
        ),
    ] = d.NEGATIVES_PER_PERTURBATION,
    test_fraction: Annotated[
        float, typer.Option(help="Share of perturbations held out (unseen).")
    ] = d.PREPARE_TEST_FRACTION,
    seed: Annotated[int, typer.Option(help="Seed of negative sampling and the split.")] = 0,
) -> None:
    """Compute DE / direction labels per perturbation vs control cells (Wilcoxon + BH) and write the tidy
    query table with an unseen-perturbation split; also writes OUT's stem + '.de.csv' with every DE call."""
    from coreperturb._escape import csv_safe
    from coreperturb.cli._render import say
    from coreperturb.data._io import write_query_table
    from coreperturb.data._prepare import DEParams, labels_from_anndata, read_h5ad

    with status(f"reading {h5ad}"):
        adata = read_h5ad(h5ad)
    with status("testing every perturbation against control cells"):
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
    csv_safe(de).to_csv(out.with_suffix(".de.csv"), index=False)
    for line, rep in reports.items():
        for msg in rep.lines():
            say(f"{line}: {msg}")
    say(
        f"wrote {out} ({len(table)} rows), {out.with_suffix('.de.csv')} and {out.with_suffix('.design.json')}"
    )
