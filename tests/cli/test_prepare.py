"""`coreperturb prepare`: the options reach labels_from_anndata (tests/report/test_outputs.py), errors are one line."""

from __future__ import annotations

from pathlib import Path

from coreperturb.cli import app
from coreperturb.data import read_query_table
from tests.cli import runner
from tests.report.test_outputs import planted_adata


def test_prepare_cli(tmp_path: Path) -> None:
    planted_adata().write_h5ad(tmp_path / "cells.h5ad")
    out = tmp_path / "q.parquet"
    res = runner.invoke(
        app,
        ["prepare", "--h5ad", str(tmp_path / "cells.h5ad"), "--perturbation-key", "pert", "--control", "ctrl",
         "--out", str(out), "--negatives-per-perturbation", "10"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    table = read_query_table(out)
    assert set(table.tasks) == {"de", "dir"} and (tmp_path / "q.de.csv").exists()
    res = runner.invoke(
        app,
        ["prepare", "--h5ad", str(tmp_path / "cells.h5ad"), "--perturbation-key", "x", "--control", "ctrl"],
    )
    assert res.exit_code == 2 and "obs has no column 'x'" in res.output
    (tmp_path / "junk.h5ad").write_text("not hdf5")
    res = runner.invoke(
        app,
        ["prepare", "--h5ad", str(tmp_path / "junk.h5ad"), "--perturbation-key", "pert", "--control", "ctrl"],
    )
    assert res.exit_code == 2 and "junk.h5ad: cannot be read as AnnData" in res.output
