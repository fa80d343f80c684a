"""``coreperturb design``: the perturbations to screen first in a new cell line (a pilot)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coreperturb.cli import _options as o
from coreperturb.cli._app import command, use_threads


@command("design")
def design_cmd(
    *,
    model_dir: Annotated[
        Path, typer.Option("--model-dir", help="A model of the other lines' screens (`fit`).")
    ],
    n: Annotated[int, typer.Option("--n", min=1, help="Pilot size: perturbations to screen first.")] = 50,
    candidates: Annotated[
        str | None,
        typer.Option(
            help="Perturbations you could screen (comma-separated names and @file items; default: every "
            "perturbation screened in one of the model's lines)."
        ),
    ] = None,
    exclude: Annotated[
        str | None, typer.Option(help="Perturbations already screened in the new line (names, @file).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the pilot as CSV (default: print only).")] = None,
    threads: o.ThreadsOpt = None,
) -> None:
    """Propose the N perturbations to screen first in a new cell line, from the model's screens and its KG.

    Greedy, each time the candidate that adds the most expected evidence: its DE rate in the lines that
    screened it times the KG similarity it brings to candidates no chosen perturbation is near yet. Nothing of
    the new line is read. Prints the pilot (rank, perturbation, lines that screened it, its DE rate there, KG
    coverage, gain); --out writes it as CSV. See docs: several screens.
    """
    from coreperturb._api import read_names
    from coreperturb._escape import csv_safe
    from coreperturb._files import atomic_write
    from coreperturb._model_files import load_model
    from coreperturb.cli._render import print_frame, say
    from coreperturb.stages import propose_pilot, resolve_perturbations

    use_threads(threads)
    models = load_model(model_dir)

    def names(value: str | None, what: str) -> list[str] | None:
        raw = read_names(value, what)
        if raw is None:
            return None
        res = resolve_perturbations(models, raw)
        if res.unknown:
            say(
                f"warning: {len(res.unknown)} {what} unknown to the model, left out: {', '.join(res.unknown[:8])}"
            )
        return res.names

    pilot = propose_pilot(
        models, n=n, candidates=names(candidates, "candidates"), exclude=names(exclude, "excluded") or ()
    )
    print_frame(pilot.round(4), f"pilot of {n}: screen these first (best first)")
    if out is not None:
        atomic_write(out, lambda t: csv_safe(pilot).to_csv(t, index=False))
        say(f"wrote {len(pilot)} perturbations to {out}")
