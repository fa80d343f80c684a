"""The prediction report shows one perturbation per group that moves the same genes, naming the others."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coreperturb.report._prediction_report import diverse_picks


def _rows(pert: str, genes: list[str], excess: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {"cell_line": "k", "method": "m", "perturbation": pert, "gene": genes, "excess": excess}
    )


def test_subunits_of_one_complex_are_shown_once() -> None:
    shared = [f"S{i}" for i in range(10)]
    frames = [_rows(f"PSMA{i}", shared, list(np.linspace(0.9 - 0.01 * i, 0.5, 10))) for i in range(1, 5)]
    frames.append(_rows("TFRC", [f"T{i}" for i in range(10)], list(np.linspace(0.6, 0.3, 10))))
    frames.append(_rows("SMC2", [*shared[:3], *[f"C{i}" for i in range(7)]], list(np.linspace(0.7, 0.2, 10))))
    known = pd.concat(frames, ignore_index=True)
    strength = known.groupby(["cell_line", "method", "perturbation"], sort=False)["excess"].max()
    picks, alike = diverse_picks(known, strength, n=3, top=10)
    assert [p for _, _, p in picks] == ["PSMA1", "SMC2", "TFRC"]
    assert alike[("k", "m", "PSMA1")] == ["PSMA2", "PSMA3", "PSMA4"]
    assert alike[("k", "m", "SMC2")] == [] and alike[("k", "m", "TFRC")] == []
    few, _ = diverse_picks(known, strength, n=1, top=10)
    assert [p for _, _, p in few] == ["PSMA1"]
