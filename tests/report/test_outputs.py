"""AnnData in (prepare), Parquet / AnnData / manifest out, HTML report, config files."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb._pipeline import PREDICTION_COLUMNS, BenchmarkConfig, run_benchmark
from coreperturb.data._prepare import labels_from_anndata
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.errors import CorePerturbError, DataValidationError
from coreperturb.report import write_report, write_run

ad = pytest.importorskip("anndata", reason="anndata not installed (pip install 'coreperturb[anndata]')")


def planted_adata(seed: int = 0, two_lines: bool = False) -> ad.AnnData:
    """Poisson counts; perturbation Pi multiplies gene Gi by 4 and gene G(i+12) by 0.2."""
    rng = np.random.default_rng(seed)
    perts = ["ctrl"] * 200 + [f"P{i}" for i in range(12) for _ in range(40)]
    p = np.array(perts)
    x = rng.poisson(5, size=(len(p), 60)).astype(np.float64)
    for i in range(12):
        m = p == f"P{i}"
        x[np.ix_(m, [i, i + 12])] = rng.poisson(np.array([20.0, 1.0]), size=(int(m.sum()), 2))
    obs = pd.DataFrame({"pert": perts}, index=[f"c{i}" for i in range(len(p))])
    if two_lines:
        obs["line"] = np.where(np.arange(len(p)) % 2 == 0, "A", "B")
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(60)]))


def test_prepare_recovers_planted_effects() -> None:
    table, reports, de = labels_from_anndata(
        planted_adata(), "pert", "ctrl", negatives_per_perturbation=20, seed=1
    )
    calls = {(r.perturbation, r.gene): r.direction for r in de.itertuples()}
    for i in range(12):
        assert calls[(f"P{i}", f"G{i}")] == "up" and calls[(f"P{i}", f"G{i + 12}")] == "down"
    f = table.frame
    d = f[(f["task"] == "dir")].set_index(["perturbation", "gene"])["label"]
    assert d[("P3", "G3")] == 1 and d[("P3", "G15")] == 0
    assert reports["cells"].n_perturbations == 12 and reports["cells"].n_test_perturbations == 3
    assert set(f.loc[f["split"] == "test", "perturbation"]).isdisjoint(
        f.loc[f["split"] == "train", "perturbation"]
    )


def test_prepare_per_cell_line() -> None:
    table, reports, _ = labels_from_anndata(
        planted_adata(two_lines=True), "pert", "ctrl", cell_line_key="line", negatives_per_perturbation=10
    )
    assert set(reports) == {"A", "B"} and set(table.cell_lines) == {"A", "B"}


def test_prepare_bad_inputs() -> None:
    a = planted_adata()
    with pytest.raises(DataValidationError, match=r"obs has no column 'guide'; available: \['pert'\]"):
        labels_from_anndata(a, "guide", "ctrl")
    with pytest.raises(DataValidationError, match=r"no control cells \(pert == 'NTC'\)"):
        labels_from_anndata(a, "pert", "NTC")
    # the likely control is named first, with the flag that would take it
    with pytest.raises(
        DataValidationError, match=r"values include \['ctrl'.*did you mean --control 'ctrl'\?"
    ):
        labels_from_anndata(a, "pert", "non-targeting")
    with pytest.raises(
        DataValidationError, match="data='log' was given but the matrix holds raw integer counts"
    ):
        labels_from_anndata(a, "pert", "ctrl", data="log")
    logged = a.copy()
    logged.X = np.log1p(logged.X / logged.X.sum(1, keepdims=True) * 1e4)
    with pytest.raises(
        DataValidationError, match=r"data='counts' was given but the matrix is not integer counts"
    ):
        labels_from_anndata(logged, "pert", "ctrl", data="counts")
    # log data given as log works and finds the same planted genes
    _, _, de = labels_from_anndata(logged, "pert", "ctrl", data="log")
    assert {("P0", "G0"), ("P0", "G12")} <= set(zip(de["perturbation"], de["gene"], strict=True))


@pytest.fixture(scope="module")
def run_dir(synth_paths: SyntheticPaths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A benchmark run written as ``coreperturb benchmark`` writes it (the library's stages; the command's
    parsing is tested in tests/cli)."""
    out = tmp_path_factory.mktemp("run")
    config = BenchmarkConfig.from_options(
        data_dir=synth_paths.data_dir,
        kg_dir=synth_paths.kg_dir,
        cell_lines=("synth_a",),
        methods=("gene_frequency", "core_voting"),
        bootstrap=20,
        seed=3,
    )
    write_run(run_benchmark(config, workdir=out), config, out, anndata=True)
    return out


def test_outputs_fixed_columns_anndata_and_manifest(run_dir: Path, synth_paths: SyntheticPaths) -> None:
    pred = pd.read_parquet(run_dir / "predictions.parquet")
    assert list(pred.columns) == list(PREDICTION_COLUMNS)
    assert set(pred["method"]) == {"gene_frequency", "core_voting"} and set(pred["cell_line"]) == {"synth_a"}
    adata = ad.read_h5ad(run_dir / "predictions.h5ad")
    assert set(adata.layers) == {"gene_frequency", "core_voting"}
    cv = pred[pred["method"] == "core_voting"].iloc[0]
    i = list(adata.obs_names).index(f"synth_a|de|{cv['perturbation']}")
    j = list(adata.var_names).index(cv["gene"])
    assert adata.layers["core_voting"][i, j] == pytest.approx(cv["score"], rel=1e-6)
    assert adata.X[i, j] == cv["label"]
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["seeds"]["seed"] == 3
    assert man["config"]["evaluate"]["bootstrap"] == 20 and len(man["config_hash"]) == 64
    f = synth_paths.data_dir / "synth_a-de.csv"
    assert man["inputs"][str(f)] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert "numpy" in man["packages"] and man["llm"] is None


def test_report_html_and_markdown(run_dir: Path) -> None:
    write_report(run_dir)
    html = (run_dir / "report.html").read_text()
    imgs = html.count("data:image/png;base64,")
    assert imgs == 4 and 'src="http' not in html  # self-contained
    for part in (
        "ROC and precision-recall",
        "Reliability",
        "per-gene AUROC",
        "Predicted-DE rate",
        "contrastive evidence",
    ):
        assert part.lower() in html.lower()
    assert "95% bootstrap confidence intervals" in html and " – " in html  # CIs in their own table
    assert "Pooled AUROC ranks all pairs together" in html  # why per-gene AUROC is the key metric
    # teaching examples: on one gene, a true positive, a false positive and a true negative
    roles = [r for r in ("true positive", "false positive", "true negative") if r in html]
    assert len(roles) >= 2
    md = (run_dir / "report.md").read_text()
    assert "![Calibration](report_files/fig2.png)" in md and (run_dir / "report_files" / "fig2.png").exists()
    # real Markdown tables (header row, separator row), not fixed-width text
    assert "| cell_line | task | method | per-gene AUROC |" in md and "|---|---|---|" in md
    with pytest.raises(CorePerturbError, match="no such file or directory"):
        write_report(run_dir / "nope")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_report_renders_in_headless_chromium(run_dir: Path) -> None:
    write_report(run_dir)
    shot = run_dir / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={run_dir / 'chromium-profile'}", "--window-size=1200,2000", f"--screenshot={shot}",
         (run_dir / "report.html").as_uri()],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 50_000
    mpl = pytest.importorskip("matplotlib.image")
    img = mpl.imread(shot)
    assert img.std() > 0.05  # not a blank page
