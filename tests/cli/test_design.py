"""``coreperturb design``, ``predict --cell-lines`` for a line with no screen, and how a line blends the others."""

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
    assert (
        "hek293: no screen, the mean of synth_a, synth_b's log-odds" in res.output
    )  # FitConfig.no_screen_mean
    rows = pd.read_csv(out)
    assert (rows["cell_line"] == "hek293").all() and rows["flag"].str.contains("no_screen").all()


def test_a_query_table_names_the_scale_of_a_line_with_no_screen(model_dir: Path, tmp_path: Path) -> None:
    q = tmp_path / "q.csv"
    pd.DataFrame({"cell_line": ["hek293", "synth_a"], "perturbation": "G0001", "gene": "G0002"}).to_csv(
        q, index=False
    )
    res = predict(model_dir, "--queries", str(q), "--out", str(tmp_path / "p.csv"))
    assert res.exit_code == 0, res.output
    assert "hek293: no screen, the mean of synth_a, synth_b's" in " ".join(res.output.split())


def test_predict_says_how_each_line_blends_the_other_lines(model_dir: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "predict",
            "--model-dir",
            str(model_dir),
            "--perturbations",
            "G0001",
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "synth_a reads synth_b (answers: own screen (" in text and ", synth_b 0." in text
    bad = runner.invoke(app, ["fit", "--other-lines-weight", "-1", "--out", str(tmp_path / "m")])
    assert bad.exit_code == 2 and "other-lines-weight" in bad.output


def test_explain_says_how_its_answer_was_blended(model_dir: Path) -> None:
    args = ["explain", "--model-dir", str(model_dir), "--perturbation", "G0001", "--gene", "G0140"]
    res = runner.invoke(app, [*args, "--cell-line", "synth_a"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "every screen counts: on the table's scale, the log-odds of this line's own answer" in text
    assert "synth_b:" in text
