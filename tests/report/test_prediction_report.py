"""The report of predictions (``coreperturb report PREDICTIONS``): specific responders per perturbation and per gene, escaped, in a browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from coreperturb import BenchmarkConfig, fit_to_directory, predict_to_file, run_benchmark
from coreperturb.errors import CorePerturbError
from coreperturb.report import write_report, write_run
from coreperturb.report._prediction_report import build_prediction_report
from coreperturb.stages import UnknownNameWarning
from coreperturb.stages._ranking import MIN_EXCESS, passes_floor

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def preds_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("predrep")
    fit_to_directory(BenchmarkConfig.from_options(tasks="de,dir"), tmp / "m")
    out = tmp / "preds.parquet"
    with pytest.warns(UnknownNameWarning, match="NOPE1"):
        predict_to_file(tmp / "m", out, perturbations="G0001,G0004,NOPE1", cell_lines=["synth_a"])
    # a user's perturbation name with HTML in it (scores copied from a real one)
    p = pd.read_parquet(out)
    evil = p[p["perturbation"] == "G0004"].assign(perturbation=EVIL)
    pd.concat([p, evil], ignore_index=True).to_parquet(out)
    return out


def test_prediction_report_lists_specific_responders_beside_gene_frequency(preds_file: Path) -> None:
    write_report(preds_file, top=5)
    html = (preds_file.parent / "preds.report.html").read_text()
    md = (preds_file.parent / "preds.report.md").read_text()
    for part in (
        "specific, up",
        "specific, down",
        "gene frequency alone would list",
        "perturbations that lower it",
    ):
        assert part in html and part in md
    assert "data:image/png;base64," in html and 'src="http' not in html  # heatmap inline, self-contained
    assert "unknown_perturbation (1 perturbations)" in html
    # the up list of G0001 is its top excess_up genes among those predicted up that pass the up list's floor
    p = pd.read_parquet(preds_file)
    p = p[(p["perturbation"] == "G0001") & (p["p_up"] >= 0.5)]
    g = p[passes_floor(p, MIN_EXCESS, rank_by="up")].nlargest(5, "excess_up")["gene"].tolist()
    assert g
    section = md.split("### G0001")[1].split("###")[0]
    up_table = section.split("**specific, down")[0]
    assert all(f"| {gene} |" in up_table for gene in g)


def test_prediction_report_escapes_names(preds_file: Path) -> None:
    html_path, _ = build_prediction_report(preds_file, preds_file.parent / "esc")
    html = html_path.read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_benchmark_report_escapes_names(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    config = BenchmarkConfig.from_options(methods="gene_frequency,core_voting")
    write_run(run_benchmark(config, workdir=run), config, run)
    ex = json.loads((run / "examples.json").read_text())
    ex[0]["perturbation"] = EVIL
    ex[0]["evidence"][0]["related_perturbation"] = EVIL
    (run / "examples.json").write_text(json.dumps(ex))
    write_report(run)
    html = (run / "report.html").read_text()
    assert EVIL not in html and "&lt;script&gt;" in html
    assert (
        "MEAN" in html and "excess DE@10" in html and "call coverage" in html
    )  # headline means, specificity and calls beside gene_frequency
    assert EVIL not in (run / "report.md").read_text()


def test_report_reads_a_table_with_the_core_columns_only(preds_file: Path, tmp_path: Path) -> None:
    """A user's own table (cell_line, perturbation, gene, method, p_de, p_prior, effect): a report, with
    the absent columns shown as unknown, never an internal error."""
    core = ["cell_line", "perturbation", "gene", "method", "p_de", "p_prior", "effect"]
    own = tmp_path / "own.csv"
    pd.read_parquet(preds_file)[core].to_csv(own, index=False)
    write_report(own, top=5)
    md = (tmp_path / "own.report.md").read_text()
    assert "### G0001" in md and "gene frequency alone would list" in md


def test_report_refuses_a_file_that_is_not_predictions(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(CorePerturbError, match="not a prediction file"):
        write_report(bad)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_prediction_report_renders_in_headless_chromium(preds_file: Path) -> None:
    html_path, _ = build_prediction_report(preds_file, preds_file.parent / "shot")
    shot = html_path.with_suffix(".png")
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={html_path.parent / 'chromium-profile'}", "--window-size=1280,2400",
         f"--screenshot={shot}", html_path.as_uri()],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 50_000
    img = pytest.importorskip("matplotlib.image").imread(shot)
    assert img.std() > 0.05  # not a blank page
