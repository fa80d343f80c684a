from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from coreperturb._config import LEAVES
from coreperturb._pipeline import PREDICTION_COLUMNS
from coreperturb.cli import app
from coreperturb.data._synthetic import SyntheticPaths
from tests.cli import predict, runner


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
    assert "P(DE)" in res.output


def test_every_option_of_every_command_is_documented() -> None:
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        assert cmd.help, name
        for param in cmd.params:
            if getattr(param, "hidden", False) or param.name == "ctx":
                continue
            if param.param_type_name == "option":
                assert getattr(param, "help", None), f"{name} {param.opts} has no help"
        out = runner.invoke(app, [name, "--help"], env={"COLUMNS": "250"}).output
        for param in cmd.params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                assert param.opts[0] in out, f"{name} --help does not show {param.opts[0]}"


def test_old_flag_spellings_still_work_with_a_warning(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    res = runner.invoke(
        app, ["predict", "--model", str(model_dir), "--perturbations", "G0001", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "--model is deprecated here; use --model-dir" in res.output and out.exists()
    res = runner.invoke(
        app,
        ["explain", "--model", str(model_dir), "--perturbation", "G0005", "--gene", "G0010", "--top", "2"],
    )
    assert res.exit_code == 0, res.output
    assert "--top is deprecated here; use --evidence-rows" in res.output


def test_an_unexpected_error_is_called_a_bug_and_debug_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import coreperturb.data._synthetic as synth  # the command imports it when it runs

    def boom(*args: object, **kwargs: object) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(synth, "write_synthetic", boom)
    res = runner.invoke(app, ["synthetic", "--out", "x"])
    assert (
        res.exit_code == 1 and "internal error (TypeError: a bug)" in res.output and "--debug" in res.output
    )
    res = runner.invoke(app, ["--debug", "synthetic", "--out", "x"])
    assert isinstance(res.exception, TypeError)


def test_help_at_80_columns_keeps_every_option_name_whole() -> None:
    for cmd in ("fit", "benchmark", "predict", "serve", "explain"):
        res = CliRunner().invoke(app, [cmd, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert res.exit_code == 0, res.output
        assert "…" not in res.output, f"{cmd} --help cuts a name at 80 columns"
        assert max(map(len, res.output.splitlines())) <= 80
    res = CliRunner().invoke(app, ["fit", "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert "--negatives-per-perturbation" in res.output and "coreperturb[ray]" in res.output


def test_every_leaf_is_a_flag_of_benchmark_or_fit() -> None:
    runner = CliRunner()
    flags: set[str] = set()
    for command in ("benchmark", "fit"):
        out = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"}).output
        flags |= set(re.findall(r"--([a-z][a-z-]+)", out))
    missing = {leaf for leaf in LEAVES if leaf.replace("_", "-") not in flags} - {"llm_extra", "all_rows"} | (
        {"all_rows"} - {f.replace("-", "_") for f in flags}
    )
    assert not missing, missing


def test_config_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('methods = "core_voting"\nbootstrapp = 3\n')
    res = runner.invoke(app, ["benchmark", "--config", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "bad.toml: key 'bootstrapp'" in res.output
    bad.write_text('api_key = "sk-123"\n')
    res = runner.invoke(app, ["benchmark", "--config", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "do not store API keys" in res.output


def test_predict_profile_prints_the_stages(model_dir: Path, tmp_path: Path) -> None:
    """``--profile``: the seconds per stage that predict_to_file measures (tests/test_profiling.py), printed."""
    out = tmp_path / "r.csv"
    res = predict(model_dir, "--perturbations", "G0001", "--out", str(out), "--profile")
    assert res.exit_code == 0, res.output
    assert "features" in res.output and "trees" in res.output and "CPU seconds per million" in res.output


def test_a_bad_thread_setting_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COREPERTURB_THREADS", "many")
    res = runner.invoke(app, ["report", "nowhere"])
    assert res.exit_code == 2 and "COREPERTURB_THREADS='many'" in res.output


def test_serve_on_a_network_address_needs_a_token(model_dir: Path) -> None:
    pytest.importorskip("fastapi", reason="serve needs FastAPI: pip install 'coreperturb[serve]'")
    res = runner.invoke(app, ["serve", "--model-dir", str(model_dir), "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "give a token" in res.output


def test_a_flag_beats_the_config_file(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'data_dir = "{synth_paths.data_dir}"\nkg_dir = "{synth_paths.kg_dir}"\ncell_lines = ["synth_a"]\n'
        'methods = ["gene_frequency"]\nseed = 5\n'
    )
    res = runner.invoke(app, ["benchmark", "--config", str(cfg), "--seed", "3", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "manifest.json").read_text())["seeds"]["seed"] == 3
