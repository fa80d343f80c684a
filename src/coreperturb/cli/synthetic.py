"""``coreperturb synthetic``: write the synthetic benchmark that the demo and the tutorials use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coreperturb.cli import _options as o
from coreperturb.cli._app import command


@command()
def synthetic(
    *,
    out: Annotated[Path, typer.Option(help="Directory to write the synthetic benchmark into.")] = Path(
        "demo"
    ),
    seed: o.SeedOpt = 0,
) -> None:
    """Write the synthetic benchmark (planted, KG-consistent signal) that the demo and the tutorials use.

    OUT/data/{synth_a,synth_b,drugs}-{de,dir}.csv (pert,gene,label,split), OUT/kg/ (GO, network, Reactome,
    CORUM, drug targets, structures) and OUT/lincs/ (drug signatures): the same layout as the real data.
    """
    from coreperturb.cli._render import say
    from coreperturb.data._synthetic import write_synthetic

    paths = write_synthetic(out, seed=seed)
    lines = ", ".join(paths.cell_lines)
    say(f"wrote {paths.data_dir} (cell lines {lines}), {paths.kg_dir} and {paths.lincs_dir}")
