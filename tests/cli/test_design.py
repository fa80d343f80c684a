"""``coreperturb design`` and ``predict --cell-lines`` for a line with no screen: what they parse and print."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from coreperturb.cli import app
from tests.cli import predict, runner


def test_design_prints_and_writes_a_pilot(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pilot.csv"
    res = runner.invoke(
        app,
        ["design", "--model-dir", str(model_dir), "--n", "4", "--exclude", "G0001,NOPE", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert (
        "pilot of 4" in res.output and "NOPE" in res.output
    )  # the unknown name is named, not dropped silently
    pilot = pd.read_csv(out)
    assert list(pilot["rank"]) == [1, 2, 3, 4] and "G0001" not in set(pilot["perturbation"])
    bad = runner.invoke(app, ["design", "--model-dir", str(model_dir), "--n", "0"])
    assert bad.exit_code != 0


def test_predict_for_a_line_with_no_screen_says_so(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "new.csv"
    res = predict(model_dir, "--perturbations", "G0001", "--cell-lines", "hek293", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "'hek293' has no screen in this model" in res.output
    assert "hek293: no screen, the mean of synth_a, synth_b's" in res.output
    rows = pd.read_csv(out)
    assert (rows["cell_line"] == "hek293").all() and rows["flag"].str.contains("no_screen").all()
