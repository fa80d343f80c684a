"""`coreperturb fit` / `predict` / `explain --model` from the command line, user KG files and name handling."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb._defaults import MIN_EXCESS
from coreperturb._model_files import load_model
from coreperturb.cli import app
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.errors import KnowledgeGraphError
from coreperturb.graph._sources import build_kg, edge_list_source
from coreperturb.report._prediction_files import LAYERS
from coreperturb.stages import GRID_COLUMNS, top_predictions
from coreperturb.stages._names import resolve_names
from tests.cli import predict, runner


def test_version_alone() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == "0.1.0"


def test_fit_saves_every_unit(model_dir: Path) -> None:
    models = load_model(model_dir)
    # the synthetic default has two lines and both tasks: fit takes every task present by default
    assert set(models.models) == {
        (line, task, m)
        for line in ("synth_a", "synth_b")
        for task in ("de", "dir")
        for m in ("core_voting", "gene_frequency")
    }


def test_predict_grid_to_parquet_csv_h5ad(model_dir: Path, tmp_path: Path) -> None:
    args = [
        "predict",
        "--model-dir",
        str(model_dir),
        "--perturbations",
        "G0001,G0004",
        "--cell-lines",
        "synth_a",
    ]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "p.parquet")])
    assert res.exit_code == 0, res.output
    p = pd.read_parquet(tmp_path / "p.parquet")
    assert list(p.columns) == list(GRID_COLUMNS)
    genes = load_model(model_dir).readout_genes("synth_a")
    assert len(p) == 2 * len(genes) and set(p["method"]) == {"core_voting"}
    assert p["p_de"].between(0, 1).all() and p["p_up"].between(0, 1).all()
    assert (p["n_pos_evidence"] >= 0).all() and (p["kg_coverage"] > 0).all()
    said = " ".join(res.output.split())  # the calls each row got, counted as the file holds them
    counts = p["call"].value_counts()
    assert (
        f"calls at confidence 0.9 (core_voting): {counts.get('DE', 0):,} DE, {counts['not DE']:,} not DE"
        in said
    )
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "p.csv"), "--top", "7"])
    assert res.exit_code == 0, res.output
    c = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert len(c) == 14 and list(c.columns) == list(GRID_COLUMNS)
    # the default floor: an excess of MIN_EXCESS with positive evidence, or the perturbation's own target
    floored = p[((p["excess"] >= MIN_EXCESS) & (p["n_pos_evidence"] > 0)) | p["on_target"]]
    best = floored.sort_values("excess", ascending=False).groupby("perturbation").head(7)  # default: excess
    assert set(zip(c["perturbation"], c["gene"], strict=True)) == set(
        zip(best["perturbation"], best["gene"], strict=True)
    )
    ad = pytest.importorskip("anndata")
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "p.h5ad")])
    assert res.exit_code == 0, res.output
    a = ad.read_h5ad(tmp_path / "p.h5ad")
    assert a.shape == (2, len(genes)) and set(a.layers) == set(LAYERS)
    assert a.layers["p_de"].dtype == np.float32
    wide = p.pivot(index="perturbation", columns="gene", values="p_de").loc[
        ["G0001", "G0004"], list(a.var_names)
    ]
    assert np.allclose(a.layers["p_de"], wide.to_numpy(), atol=1e-6)
    assert list(a.obs["perturbation"]) == ["G0001", "G0004"]


def test_predict_all_excludes_training_perturbations(model_dir: Path, tmp_path: Path) -> None:
    res = predict(
        model_dir,
        "--perturbations",
        "all",
        "--cell-lines",
        "synth_b",
        "--top",
        "3",
        "--out",
        str(tmp_path / "all.parquet"),
    )
    assert res.exit_code == 0, res.output
    p = pd.read_parquet(tmp_path / "all.parquet")
    trained = set(load_model(model_dir).training_perturbations("synth_b"))
    assert p["perturbation"].nunique() > 0 and not set(p["perturbation"]) & trained
    # lists hold at most 3 rows, only those above the floor (on-target rows aside, with positive evidence)
    assert (p.groupby("perturbation").size() <= 3).all()
    assert (p["flag"] == np.where(p["on_target"], "on_target", "")).all()
    assert ((p["n_pos_evidence"] > 0) | p["on_target"]).all()


def test_unknown_and_miscased_names_are_warned_and_flagged(model_dir: Path, tmp_path: Path) -> None:
    res = predict(
        model_dir,
        "--perturbations",
        "g0001,NOPE1",
        "--genes",
        "G0002,G0003,XYZ9",
        "--cell-lines",
        "synth_a",
        "--out",
        str(tmp_path / "p.csv"),
    )
    assert res.exit_code == 0, res.output
    assert "perturbation 'g0001' read as 'G0001'" in res.output
    assert "perturbation 'NOPE1' is unknown to the model and the KG" in res.output
    assert "gene 'XYZ9' was never a readout" in res.output and "get no score" in res.output
    p = pd.read_csv(tmp_path / "p.csv", keep_default_na=False).set_index(["perturbation", "gene"])
    # an unknown readout gene gets no number, never the global prior
    assert p.loc[("G0001", "XYZ9"), "p_de"] == "" and p.loc[("G0001", "XYZ9"), "effect"] == ""
    assert float(p.loc[("G0001", "G0002"), "p_de"]) > 0
    assert set(p.index.get_level_values(0)) == {"G0001", "NOPE1"}
    assert p.loc[("NOPE1", "G0002"), "flag"] == "unknown_perturbation"
    assert p.loc[("NOPE1", "XYZ9"), "flag"] == "unknown_perturbation;unknown_gene"
    assert p.loc[("NOPE1", "G0002"), "kg_coverage"] == 0
    # the calls line counts the rows left without a call
    none = int((p.loc[p["method"] == "core_voting", "call"] == "").sum())
    assert none >= 4 and f"{none:,} without a call (see the flag column)" in " ".join(res.output.split())
    # only unknown names: nothing useful to predict, one clear line
    res = predict(model_dir, "--perturbations", "NOPE1,NOPE2")
    assert res.exit_code == 2 and "none of the 2 perturbations is known" in res.output
    res = predict(model_dir, "--perturbations", "G0001", "--genes", "NOTAGENE1,NOTAGENE2")
    assert res.exit_code == 2 and "none of the 2 genes is a readout gene of the model" in res.output


def test_resolve_names_rules() -> None:
    res = resolve_names(
        ["FTH1", "fth1", "Imatinib", "TP53X", "abc"], ["FTH1", "TP53", "ABC", "abc"], {"imatinib": "DB00619"}
    )
    assert res.names == ["FTH1", "FTH1", "DB00619", "TP53X", "abc"]
    assert res.renamed == {"fth1": "FTH1", "Imatinib": "DB00619"}
    assert res.unknown == ["TP53X"] and "TP53" in res.suggestions["TP53X"]
    ambiguous = resolve_names(["Abc"], ["ABC", "abc"])
    assert ambiguous.unknown == ["Abc"]  # two case-insensitive matches: never guessed


def test_predict_queries_file(model_dir: Path, tmp_path: Path) -> None:
    q = pd.DataFrame(
        {
            "pert": ["G0001", "G0004", "G0001"],
            "gene": ["G0002", "G0003", "G0005"],
            "cell_line": ["synth_a", "synth_a", "synth_b"],
        }
    )
    q.to_csv(tmp_path / "q.csv", index=False)
    res = predict(
        model_dir,
        "--queries",
        str(tmp_path / "q.csv"),
        "--methods",
        "all",
        "--out",
        str(tmp_path / "o.parquet"),
    )
    assert res.exit_code == 0, res.output
    o = pd.read_parquet(tmp_path / "o.parquet")
    assert len(o) == 6 and set(o["method"]) == {"core_voting", "gene_frequency"}
    grid = pd.read_parquet(tmp_path / "o.parquet").query("cell_line == 'synth_b'")
    assert set(grid["perturbation"]) == {"G0001"}
    (tmp_path / "bad.csv").write_text("pert,gene\nG0001,\n")
    res = predict(model_dir, "--queries", str(tmp_path / "bad.csv"))
    assert res.exit_code == 2 and "bad.csv, row 2, column 'gene': empty value" in res.output


def test_explain_with_model_and_unknown_names(model_dir: Path) -> None:
    res = runner.invoke(
        app, ["explain", "--model-dir", str(model_dir), "--perturbation", "g0005", "--gene", "G0010"]
    )
    assert res.exit_code == 0, res.output
    assert "read as 'G0005'" in res.output and "P(DE)" in res.output
    res = runner.invoke(
        app, ["explain", "--model-dir", str(model_dir), "--perturbation", "G00O5", "--gene", "G0010"]
    )
    assert res.exit_code == 2 and "'G00O5' is unknown to the model and the KG" in res.output
    assert "P(DE)" not in res.output
    res = runner.invoke(app, ["explain", "--perturbation", "G0005", "--gene", "NOPE"])
    assert res.exit_code == 2 and "gene 'NOPE' was never a readout" in res.output


def test_edge_list_with_and_without_header(tmp_path: Path) -> None:
    with_header = tmp_path / "a.tsv"
    with_header.write_text("protein1\tprotein2\tscore\nA\tB\t900\nB\tC\t800\n")
    no_header = tmp_path / "b.csv"
    no_header.write_text("A,B\nB,C\n")
    one_col = tmp_path / "c.tsv"
    one_col.write_text("A\nB\n")
    empty_field = tmp_path / "d.tsv"
    empty_field.write_text("gene_a\tgene_b\nA\tB\nC\t\n")
    kg_a = build_kg(None, extra=[edge_list_source(with_header, "net")])
    kg_b = build_kg(None, extra=[edge_list_source(no_header, "net")])
    assert list(kg_a.genes) == list(kg_b.genes) == ["A", "B", "C"]
    assert (kg_a.relations["net"].matrix != kg_b.relations["net"].matrix).nnz == 0
    with pytest.raises(KnowledgeGraphError, match=r"c\.tsv: line 1: an edge list needs two gene columns"):
        build_kg(None, extra=[edge_list_source(one_col)])
    with pytest.raises(KnowledgeGraphError, match=r"d\.tsv: line 3: needs two gene columns"):
        build_kg(None, extra=[edge_list_source(empty_field)])


def test_fit_with_own_kg_files_only(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    """--kg-edges / --kg-gmt without --kg-dir, header or not, also from a config file."""
    net = pd.read_csv(synth_paths.kg_dir / "gene_network.tsv", sep="\t")
    net.iloc[: len(net) // 2].to_csv(tmp_path / "net1.tsv", sep="\t", index=False)  # with header
    net.iloc[len(net) // 2 :].to_csv(tmp_path / "net2.tsv", sep="\t", index=False, header=False)
    gmt = synth_paths.kg_dir / "reactome_pathways.gmt"
    args = [
        "fit",
        "--data-dir",
        str(synth_paths.data_dir),
        "--cell-lines",
        "synth_a",
        "--tasks",
        "de",
        "--kg-edges",
        f"first={tmp_path / 'net1.tsv'}",
        "--kg-edges",
        f"second={tmp_path / 'net2.tsv'}",
        "--kg-gmt",
        f"paths={gmt}",
        "--out",
        str(tmp_path / "m"),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    kg = load_model(tmp_path / "m").kg
    assert kg.relation_names == ["first", "second", "paths"]
    (tmp_path / "run.toml").write_text(
        f'data_dir = "{synth_paths.data_dir}"\ncell_lines = "synth_a"\ntask = "de"\n'
        'kg_edges = ["first=net1.tsv"]\n'
    )
    res = runner.invoke(app, ["fit", "--config", str(tmp_path / "run.toml"), "--out", str(tmp_path / "m2")])
    assert res.exit_code == 0, res.output
    assert load_model(tmp_path / "m2").kg.relation_names == ["first"]
    (tmp_path / "bad.toml").write_text("bootstrap = 10\n")
    res = runner.invoke(app, ["fit", "--config", str(tmp_path / "bad.toml")])
    assert res.exit_code == 2 and "key 'bootstrap' is not an option of `coreperturb fit`" in res.output
    res = runner.invoke(app, [*args[:-2], "--kg-edges", "x=/no/such.tsv", "--out", str(tmp_path / "m3")])
    assert res.exit_code == 2 and "/no/such.tsv: file not found" in res.output


def test_cell_lines_default_to_the_lines_present(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "benchmark",
            "--data-dir",
            str(synth_paths.data_dir),
            "--kg-dir",
            str(synth_paths.kg_dir),
            "--methods",
            "gene_frequency",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    m = pd.read_csv(tmp_path / "metrics.csv")
    # the fixture writes synth_a plus the drug table (drugs-de.csv): every present line is benchmarked
    assert set(m["cell_line"]) == {"synth_a", "drugs"}


def test_all_failed_llm_method_exits_non_zero(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = runner.invoke(
            app,
            [
                "benchmark",
                "--cell-lines",
                "synth_a",
                "--methods",
                "gene_frequency,llm_isolated",
                "--llm",
                "openai",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--llm-model",
                "x",
                "--max-retries",
                "0",
                "--timeout",
                "2",
                "--calibration-queries",
                "0",
                "--max-queries",
                "40",
                "--out",
                str(tmp_path),
            ],
        )
    assert res.exit_code == 1, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: synth_a/de/llm_isolated failed on all") and "queries:" in last
    p = pd.read_parquet(tmp_path / "predictions.parquet")
    llm = p[p["method"] == "llm_isolated"]
    assert llm["score"].isna().all() and llm["error"].notna().all()  # no prior dressed up as an answer
    m = pd.read_csv(tmp_path / "metrics.csv").set_index(["method", "metric"])["value"]
    assert m[("llm_isolated", "n_errors")] == len(llm) and m[("llm_isolated", "n_scored")] == 0
    assert m[("gene_frequency", "n_scored")] == len(llm)


def test_prepare_fit_predict_from_single_cells(tmp_path: Path) -> None:
    """Single cells → labels (prepare) → model (fit --queries, own edge list) → predictions, and benchmark."""
    ad = pytest.importorskip("anndata", reason="anndata not installed (pip install 'coreperturb[anndata]')")
    rng = np.random.default_rng(0)
    perts = ["ctrl"] * 200 + [f"G{i}" for i in range(32) for _ in range(24)]
    p = np.array(perts)
    x = rng.poisson(5, size=(len(p), 100)).astype(np.float64)
    for i in range(32):  # knocking down Gi raises its module's gene G(80 + i // 4) and lowers G(40 + i)
        m = p == f"G{i}"
        x[np.ix_(m, [80 + i // 4, 40 + i])] = rng.poisson(np.array([25.0, 1.0]), size=(int(m.sum()), 2))
    obs = pd.DataFrame({"guide": perts}, index=[f"c{i}" for i in range(len(p))])
    var = pd.DataFrame(index=[f"G{j}" for j in range(100)])
    ad.AnnData(X=x, obs=obs, var=var).write_h5ad(tmp_path / "cells.h5ad")
    # a KG of eight modules of four genes each (G0-G3, G4-G7, ...), as a header-less edge list
    edges = [
        (f"G{a}", f"G{b}") for m in range(8) for a in range(4 * m, 4 * m + 4) for b in range(a + 1, 4 * m + 4)
    ]
    pd.DataFrame(edges).to_csv(tmp_path / "edges.tsv", sep="\t", index=False, header=False)
    q = tmp_path / "queries.parquet"
    res = runner.invoke(
        app,
        [
            "prepare",
            "--h5ad",
            str(tmp_path / "cells.h5ad"),
            "--perturbation-key",
            "guide",
            "--control",
            "ctrl",
            "--negatives-per-perturbation",
            "20",
            "--out",
            str(q),
        ],
    )
    assert res.exit_code == 0, res.output
    kg = ["--kg-edges", f"modules={tmp_path / 'edges.tsv'}"]
    res = runner.invoke(app, ["fit", "--queries", str(q), *kg, "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    models = load_model(tmp_path / "m")
    assert models.tasks == ["de", "dir"] and models.kg.relation_names == ["modules"]
    test_perts = sorted(pd.read_parquet(q).query("split == 'test'")["perturbation"].unique())
    res = predict(
        tmp_path / "m", "--perturbations", ",".join(test_perts), "--out", str(tmp_path / "p.parquet")
    )
    assert res.exit_code == 0, res.output
    pred = pd.read_parquet(tmp_path / "p.parquet")
    assert set(pred["perturbation"]) == set(test_perts) and pred["p_de"].notna().all()
    # the planted module gene of each unseen perturbation ranks above the average gene
    for pert in test_perts:
        i = int(pert[1:])
        row = pred[pred["perturbation"] == pert].set_index("gene")["p_de"]
        assert row[f"G{80 + i // 4}"] > row.median()
    res = runner.invoke(
        app,
        [
            "benchmark",
            "--queries",
            str(q),
            *kg,
            "--methods",
            "gene_frequency,core_voting",
            "--out",
            str(tmp_path / "bench"),
        ],
    )
    assert res.exit_code == 0, res.output
    # a prepared table without a split column fits on every row
    full = pd.read_parquet(q).drop(columns="split")
    full.to_csv(tmp_path / "all.csv", index=False)
    res = runner.invoke(
        app,
        ["fit", "--queries", str(tmp_path / "all.csv"), *kg, "--tasks", "de", "--out", str(tmp_path / "m2")],
    )
    assert res.exit_code == 0, res.output
    assert len(load_model(tmp_path / "m2").train) == int((full["task"] == "de").sum())


def test_perturbation_lists_mix_names_and_files(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("G0004\n# a comment\nG0007  # inline\n\n")
    out = tmp_path / "p.csv"
    res = predict(
        model_dir,
        "--perturbations",
        f"G0001,@{tmp_path / 'more.txt'},G0004",
        "--cell-lines",
        "synth_a",
        "--genes",
        "G0002",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert pd.read_csv(out)["perturbation"].tolist() == ["G0001", "G0004", "G0007"]


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda d: (d / "model.json").write_text("[" * 200_000 + "]" * 200_000), "nested too deeply"),
        (lambda d: (d / "estimators.npz").unlink(), "estimators.npz: file missing from the model directory"),
    ],
)
def test_a_broken_model_directory_is_one_line(
    model_dir: Path, tmp_path: Path, damage: object, words: str
) -> None:
    """What loading a model raises (tests/test_model_files.py) reaches the user as one line with status 2."""
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    damage(broken)  # type: ignore[operator]
    res = predict(broken, "--perturbations", "G0001")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert words in res.output and "Traceback" not in res.output and "internal error" not in res.output


def test_cli_per_gene_rank_by_down_round_trip(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "down.csv"
    args = ["predict", "--model-dir", str(model_dir), "--cell-lines", "synth_a", "--perturbations", "all"]
    res = runner.invoke(
        app,
        [
            *args,
            "--genes",
            "G0010,G0020",
            "--per",
            "gene",
            "--rank-by",
            "down",
            "--top",
            "4",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out, keep_default_na=False)
    models = load_model(model_dir)
    want = top_predictions(
        models, genes=["G0010", "G0020"], top=4, rank_by="down", per="gene", cell_lines=["synth_a"]
    )
    assert list(got["gene"]) == list(want["gene"]) and list(got["perturbation"]) == list(want["perturbation"])
    sizes = got.groupby("gene").size()  # at most 4 per gene, only those above the floor (G0010 may have none)
    assert set(sizes.index) <= {"G0010", "G0020"} and sizes.le(4).all() and sizes.sum() >= 1
    res = runner.invoke(app, [*args, "--rank-by", "down", "--out", str(out)])
    assert res.exit_code == 2 and "give --top N too" in res.output
