from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from coreperturb.cli import app
from coreperturb.pipeline import PREDICTION_COLUMNS

runner = CliRunner()


def test_benchmark_on_synthetic_default(tmp_path: Path) -> None:
    res = runner.invoke(app, ["benchmark", "--out", str(tmp_path), "--cell-lines", "synth_a"])
    assert res.exit_code == 0, res.output
    m = pd.read_csv(tmp_path / "metrics.csv")
    assert list(m.columns) == ["cell_line", "task", "method", "metric", "value", "ci_low", "ci_high"]
    need = {
        "auroc",
        "auprc",
        "macro_per_gene_auroc",
        "n_genes_per_gene_auroc",
        "f1",
        "ece",
        "brier",
        "pred_pos_rate",
        "true_pos_rate",
    }
    assert need <= set(m["metric"])
    assert set(m["method"]) == {"gene_frequency", "knn_retrieval", "core_voting"}
    p = pd.read_parquet(tmp_path / "predictions.parquet")
    assert list(p.columns) == list(PREDICTION_COLUMNS)
    assert set(p["method"]) == {"gene_frequency", "knn_retrieval", "core_voting"}
    assert p.groupby("method").size().nunique() == 1  # every method scored the same queries
    assert not p.duplicated(["cell_line", "task", "method", "perturbation", "gene"]).any()
    assert "macro_per_gene_auroc" in res.output


def test_benchmark_bad_inputs_give_one_line_errors(tmp_path: Path) -> None:
    res = runner.invoke(app, ["benchmark", "--out", str(tmp_path), "--methods", "nope"])
    assert res.exit_code == 2 and "unknown predictor 'nope'" in res.output
    res = runner.invoke(app, ["benchmark", "--out", str(tmp_path), "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "need a KG: a KG directory (kg_dir)" in res.output
    (tmp_path / "x-de.csv").write_text("pert,gene,label,split\nA,B,2,train\n")
    res = runner.invoke(
        app,
        [
            "benchmark",
            "--out",
            str(tmp_path / "o"),
            "--data-dir",
            str(tmp_path),
            "--kg-dir",
            str(tmp_path),
            "--cell-lines",
            "x",
        ],
    )
    assert res.exit_code == 2 and "row 2, column 'label'" in res.output
    assert "Traceback" not in res.output


def test_explain_prints_both_sides() -> None:
    res = runner.invoke(
        app, ["explain", "--perturbation", "G0005", "--gene", "G0010", "--evidence-rows", "3"]
    )
    assert res.exit_code == 0, res.output
    assert "positive evidence" in res.output and "negative evidence" in res.output
    assert "P(positive)" in res.output
