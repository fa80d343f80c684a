"""What `coreperturb explain` prints: context evidence from other cell lines, structural similarity."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from coreperturb.cli import app
from coreperturb.data._synthetic import SyntheticPaths


def test_explain_transfer_prints_context_evidence() -> None:
    res = CliRunner().invoke(
        app, ["explain", "--perturbation", "G0001", "--gene", "G0334", "--transfer", "--evidence-rows", "3"]
    )
    assert res.exit_code == 0, res.output
    assert "G0001 in the other cell lines" in res.output and "synth_b" in res.output
    assert "responded like G0001" in res.output
    res = CliRunner().invoke(
        app, ["explain", "--perturbation", "G0001", "--gene", "G0334", "--transfer", "--cell-line", "nope"]
    )
    assert res.exit_code == 2 and "cell line 'nope' not found" in res.output


def test_explain_shows_structural_similarity(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    pytest.importorskip("rdkit", reason="RDKit is not installed (pip install 'coreperturb[chem]')")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(synth_paths.data_dir / "drugs-de.csv", data / "drugs-de.csv")
    test = pd.read_csv(data / "drugs-de.csv")
    test = test[test["split"] == "test"]
    row = test[test["pert"] == "DB90059"].iloc[0] if (test["pert"] == "DB90059").any() else test.iloc[0]
    res = CliRunner().invoke(
        app,
        [
            "explain",
            "--data-dir",
            str(data),
            "--kg-dir",
            str(synth_paths.kg_dir),
            "--perturbation",
            str(row["pert"]),
            "--gene",
            str(row["gene"]),
            "--top",
            "20",
        ],
        env={"COLUMNS": "250"},
    )
    assert res.exit_code == 0, res.output
    assert "structural similarity (Tanimoto" in res.output
