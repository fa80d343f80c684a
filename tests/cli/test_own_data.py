"""Own data without surprises: the failures a new user hit on the fit / predict path, and a fuzz over
malformed query tables and model directories (rc 0 with a correct result, or one line; never a traceback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import Result

from coreperturb._model_files import load_model, read_model_json
from coreperturb.cli import app
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.stages._names import GENE_SYMBOL
from tests.cli import predict, runner


def _error_lines(res: Result) -> list[str]:
    return [ln for ln in res.output.splitlines() if ln.startswith("error:")]


def _one_line_or_ok(res: Result) -> None:
    """The contract: rc 0, or rc 2 with exactly one ``error:`` line; never a traceback."""
    assert "Traceback" not in res.output
    if res.exit_code == 0:
        return
    assert isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 2 and len(_error_lines(res)) == 1, res.output


@pytest.fixture(scope="module")
def table(synth_paths: SyntheticPaths) -> pd.DataFrame:
    f = pd.read_csv(synth_paths.data_dir / "synth_a-de.csv").rename(columns={"pert": "perturbation"})
    return f.reset_index(drop=True)


# -- 1. a benchmark on a tiny screen finishes and says why a metric is missing -----------------------


def test_tiny_screen_benchmark_finishes_and_says_why(
    table: pd.DataFrame, synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    perts = sorted(table["perturbation"].unique())[:3]
    small = table[table["perturbation"].isin(perts)].copy()
    small["split"] = np.where(small["perturbation"] == perts[0], "test", "train")
    small.to_parquet(tmp_path / "queries.parquet")
    res = runner.invoke(
        app,
        ["benchmark", "--queries", str(tmp_path / "queries.parquet"), "--kg-dir", str(synth_paths.kg_dir),
         "--methods", "gene_frequency,core_voting", "--out", str(tmp_path / "run")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "metrics.csv").is_file() and (
        tmp_path / "run" / "predictions.parquet"
    ).is_file()
    if "macro_per_gene_auroc is missing" not in res.output:  # a test gene happened to have both classes
        assert "per-gene AUROC" in res.output or "macro_per_gene_auroc" in res.output
    assert "too little data" in res.output  # 2 training perturbations
    res = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output


# -- 2. fit --queries with defaults for split, cell_line and task ------------------------------------


def test_fit_queries_without_split_cell_line_or_task(
    table: pd.DataFrame, synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    plain = table[table["split"] == "train"][["perturbation", "gene", "label"]]
    plain.to_csv(tmp_path / "my_screen.csv", index=False)
    args = ["fit", "--queries", str(tmp_path / "my_screen.csv"), "--kg-dir", str(synth_paths.kg_dir)]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "m1")])
    assert res.exit_code == 0, res.output
    assert set(load_model(tmp_path / "m1").models) == {("my_screen", "de", "core_voting")}
    res = runner.invoke(app, [*args, "--cell-line", "K562", "--out", str(tmp_path / "m2")])
    assert res.exit_code == 0, res.output
    assert load_model(tmp_path / "m2").cell_lines == ["K562"]


def test_fit_says_it_leaves_the_test_split_out_and_all_rows_uses_it(
    table: pd.DataFrame, synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    table.to_csv(tmp_path / "q.csv", index=False)
    args = ["fit", "--queries", str(tmp_path / "q.csv"), "--kg-dir", str(synth_paths.kg_dir)]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "m")])
    n_test = int((table["split"] == "test").sum())
    assert res.exit_code == 0 and f"the {n_test} rows of" in res.output and "--all-rows" in res.output
    assert len(load_model(tmp_path / "m").train) == int((table["split"] == "train").sum())
    res = runner.invoke(app, [*args, "--all-rows", "--out", str(tmp_path / "all")])
    assert res.exit_code == 0, res.output
    assert len(load_model(tmp_path / "all").train) == len(table)


# -- 3. a hand-edited model.json stops; a deliberate edit is resealed --------------------------------


def test_hand_edited_model_json_stops_and_reseal_accepts_it(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "edited"
    shutil.copytree(model_dir, d)
    meta = json.loads((d / "model.json").read_text())
    meta["units"][0]["params"]["top_k"] = 5
    meta["units"][0]["attrs"]["threshold_"] = 0.99
    (d / "model.json").write_text(json.dumps(meta, indent=1))
    args = [
        "predict",
        "--model-dir",
        str(d),
        "--perturbations",
        "G0001",
        "--out",
        str(tmp_path / "p.parquet"),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "content does not match its content_sha256" in res.output
    assert not (tmp_path / "p.parquet").exists()
    res = runner.invoke(app, ["reseal-model", str(d), "--note", "threshold 0.99 on purpose"])
    assert res.exit_code == 0, res.output
    assert read_model_json(d)["resealed"][0]["note"] == "threshold 0.99 on purpose"
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    # reseal records edits of model.json only: a modified data file still stops
    (d / "train.parquet").write_bytes((d / "train.parquet").read_bytes()[:-10])
    res = runner.invoke(app, ["reseal-model", str(d)])
    assert res.exit_code == 2 and "train.parquet: missing or modified" in res.output


# -- 4. only human gene symbols among "all perturbations" --------------------------------------------


def test_gene_symbol_rule() -> None:
    good = ["TP53", "HLA-DRB1", "NKX2-1", "C1orf50", "C8orf44-SGK3", "H3-3A", "GTF2H2C_2", "AC118549.1"]
    bad = ["N/A", "SARS-coronavirus", "Rv1280c", "1a", "18S-rRNA", "Hh5-strain-Merlin-complete-genome", "gag"]
    assert all(GENE_SYMBOL.match(g) for g in good)
    assert not any(GENE_SYMBOL.match(b) for b in bad)


def test_predict_all_drops_junk_kg_names(
    synth_paths: SyntheticPaths, table: pd.DataFrame, tmp_path: Path
) -> None:
    kg_genes = sorted(table["perturbation"].unique())
    junk = ["N/A", "Rv1280c", "SARS-coronavirus", "18S-rRNA"]
    edges = pd.DataFrame({"a": [*junk, "G9001"], "b": kg_genes[:5]})
    edges.to_csv(tmp_path / "edges.tsv", sep="\t", index=False, header=False)
    res = runner.invoke(
        app,
        ["fit", "--data-dir", str(synth_paths.data_dir), "--kg-dir", str(synth_paths.kg_dir), "--cell-lines",
         "synth_a", "--tasks", "de", "--kg-edges", f"extra={tmp_path / 'edges.tsv'}", "--out", str(tmp_path / "m")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    res = predict(
        tmp_path / "m", "--perturbations", "all", "--top", "2", "--out", str(tmp_path / "all.parquet")
    )
    assert res.exit_code == 0, res.output
    assert "4 KG names are no human gene symbol" in res.output and "Rv1280c" in res.output
    perts = set(pd.read_parquet(tmp_path / "all.parquet")["perturbation"])
    assert not perts & set(junk) and "G9001" in perts


# -- 5. too little data is said, with numbers, and recorded ------------------------------------------


def test_too_little_data_warns_and_is_recorded(
    table: pd.DataFrame, synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    perts = sorted(table.loc[table["split"] == "train", "perturbation"].unique())[:2]
    tiny = table[table["perturbation"].isin(perts)][["perturbation", "gene", "label"]]
    tiny.to_csv(tmp_path / "tiny.csv", index=False)
    res = runner.invoke(
        app,
        [
            "fit",
            "--queries",
            str(tmp_path / "tiny.csv"),
            "--kg-dir",
            str(synth_paths.kg_dir),
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "too little data: 2 training perturbations (minimum 20)" in res.output
    assert any("2 training perturbations" in w for w in read_model_json(tmp_path / "m")["data_warnings"])


# -- 6. no temporary file left behind; output problems stop before the work --------------------------


def test_output_path_problems_stop_before_the_work(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "adir.parquet").mkdir()
    res = predict(model_dir, "--perturbations", "G0001", "--out", str(tmp_path / "adir.parquet"))
    assert res.exit_code == 2 and "adir.parquet: is a directory" in res.output
    assert not list(tmp_path.glob(".*partial"))
    res = predict(model_dir, "--perturbations", "G0001", "--out", "/proc/nope/p.parquet")
    assert (
        res.exit_code == 2 and "/proc/nope/p.parquet" in _error_lines(res)[0] and ".partial" not in res.output
    )


def test_sigterm_leaves_no_partial_file(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "all_k.parquet"
    env = {**os.environ, "COREPERTURB_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "coreperturb.cli", "predict", "--model-dir", str(model_dir), "--perturbations", "all",
         "--chunk-pairs", "1000", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = ""
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "perturbations (10%)" in line or "perturbations (20%)" in line:
            break
        assert line or proc.poll() is None, seen
    assert list(tmp_path.glob(".all_k.parquet.*.partial")), seen  # mid-run
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    assert rc == 128 + signal.SIGTERM, seen
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


# -- fuzz: malformed query tables and model directories ----------------------------------------------


def _tables(base: pd.DataFrame) -> dict[str, Callable[[Path], Path]]:
    """Name → writer of one malformed (or odd but valid) query table."""

    def csv(df: pd.DataFrame, **kw: object) -> Callable[[Path], Path]:
        def w(p: Path) -> Path:
            df.to_csv(p / "q.csv", index=False, **kw)  # type: ignore[arg-type]
            return p / "q.csv"

        return w

    def raw(data: bytes, name: str = "q.csv") -> Callable[[Path], Path]:
        def w(p: Path) -> Path:
            (p / name).write_bytes(data)
            return p / name

        return w

    b = base
    nan_label = b.copy()
    nan_label.loc[3, "label"] = np.nan
    two = b.copy()
    two.loc[5, "label"] = 2
    maybe = b.astype({"label": object}).copy()
    maybe.loc[4, "label"] = "maybe"
    empty_p = b.copy()
    empty_p.loc[2, "perturbation"] = ""
    conflict = pd.concat([b, b.head(3).assign(label=1 - b.head(3)["label"])], ignore_index=True)
    dup = pd.concat([b, b.head(5)], ignore_index=True)
    bad_split = b.copy()
    bad_split.loc[1, "split"] = "foo"
    bad_task = b.assign(task="xyz")
    weird = b.copy()
    weird.loc[0, "perturbation"] = "Gén-ü"
    spaces = b.assign(perturbation=" " + b["perturbation"] + " ")
    numeric = b.assign(gene=np.arange(len(b)) % 50)
    floats = b.assign(label=b["label"].astype(float))
    extra = b.assign(notes="x", score=0.3)
    nan_line = b.astype({"cell_line": object}).copy()
    nan_line.loc[0, "cell_line"] = np.nan
    parquet = b.to_parquet()
    return {
        "drop perturbation": csv(b.drop(columns="perturbation")),
        "drop gene": csv(b.drop(columns="gene")),
        "drop label": csv(b.drop(columns="label")),
        "label maybe": csv(maybe),
        "label NaN": csv(nan_label),
        "label 2": csv(two),
        "empty perturbation": csv(empty_p),
        "conflicting duplicates": csv(conflict),
        "identical duplicates": csv(dup),
        "split foo": csv(bad_split),
        "task xyz": csv(bad_task),
        "empty file": raw(b""),
        "header only": raw(b"perturbation,gene,label,split\n"),
        "latin-1": raw(weird.to_csv(index=False).encode("latin-1")),
        "utf-16": raw(b.to_csv(index=False).encode("utf-16")),
        "binary garbage": raw(bytes(range(256)) * 20),
        "semicolons": csv(b, sep=";"),
        "numeric genes": csv(numeric),
        "padded names": csv(spaces),
        "all negative": csv(b.assign(label=0)),
        "truncated parquet": raw(parquet[: len(parquet) // 2], "q.parquet"),
        "extra columns": csv(extra),
        "float labels": csv(floats),
        "cell_line NaN": csv(nan_line),
        "unknown suffix": raw(b.to_csv(index=False).encode(), "q.xlsx"),
    }


def _model_edits() -> dict[str, Callable[[Path], None]]:
    def meta(fn: Callable[[dict[str, object]], object]) -> Callable[[Path], None]:
        def edit(d: Path) -> None:
            m = json.loads((d / "model.json").read_text())
            out = fn(m)
            (d / "model.json").write_text(json.dumps(m if out is None else out))

        return edit

    def trunc(name: str) -> Callable[[Path], None]:
        return lambda d: (d / name).write_bytes((d / name).read_bytes()[:100])

    return {
        "no train.parquet": lambda d: (d / "train.parquet").unlink(),
        "truncated estimators": trunc("estimators.npz"),
        "truncated kg.npz": trunc("kg.npz"),
        "edited threshold": meta(lambda m: m["units"][0]["attrs"].__setitem__("threshold_", 0.99)),  # type: ignore[index]
        "invalid JSON": lambda d: (d / "model.json").write_text("{not json"),
        "format 99": meta(lambda m: m.__setitem__("format_version", 99)),
        "units removed": meta(lambda m: m.pop("units")),
        "JSON list": meta(lambda m: []),
        "empty model.json": lambda d: (d / "model.json").write_text(""),
        "model.json latin-1 bytes": lambda d: (d / "model.json").write_bytes(b"\xff\xfe\x00garbage"),
    }


@pytest.fixture(scope="module")
def fuzz_base(table: pd.DataFrame) -> pd.DataFrame:
    perts = sorted(table["perturbation"].unique())[:40]
    return table[table["perturbation"].isin(perts)].assign(cell_line="fz", task="de").reset_index(drop=True)


@pytest.mark.parametrize(
    "case",
    list(
        _tables(
            pd.DataFrame(
                {
                    "perturbation": ["a"],
                    "gene": ["b"],
                    "label": [0],
                    "split": ["train"],
                    "cell_line": ["x"],
                    "task": ["de"],
                }
            )
        )
    ),
)
def test_fuzz_query_tables(
    case: str, fuzz_base: pd.DataFrame, synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    path = _tables(fuzz_base)[case](tmp_path)
    res = runner.invoke(
        app,
        ["fit", "--queries", str(path), "--kg-dir", str(synth_paths.kg_dir), "--out", str(tmp_path / "m")],
    )
    _one_line_or_ok(res)
    if res.exit_code == 0:
        models = load_model(tmp_path / "m")
        assert models.models and len(models.train) > 0
    else:
        assert not (tmp_path / "m").exists()  # nothing half-written
        assert path.name in _error_lines(res)[0] or "q." in _error_lines(res)[0]
    res = runner.invoke(
        app,
        [
            "benchmark",
            "--queries",
            str(path),
            "--kg-dir",
            str(synth_paths.kg_dir),
            "--methods",
            "gene_frequency",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    _one_line_or_ok(res)


@pytest.mark.parametrize("case", list(_model_edits()))
def test_fuzz_model_directories(case: str, model_dir: Path, tmp_path: Path) -> None:
    import shutil

    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    _model_edits()[case](d)
    out = tmp_path / "p.parquet"
    res = predict(d, "--perturbations", "G0001", "--out", str(out))
    _one_line_or_ok(res)
    assert res.exit_code == 2, res.output  # every edit is detected
    assert str(d) in _error_lines(res)[0] and not out.exists()


def test_fit_reads_queries_repeated_and_beside_a_data_directory(
    synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    a, b = tmp_path / "lab_a.csv", tmp_path / "lab_b.csv"
    pd.read_csv(synth_paths.data_dir / "synth_a-de.csv").to_csv(a, index=False)
    pd.read_csv(synth_paths.data_dir / "synth_a-de.csv").to_csv(b, index=False)
    two = ["fit", "--queries", str(a), "--queries", str(b), "--kg-dir", str(synth_paths.kg_dir)]
    res = runner.invoke(app, [*two, "--cell-line", "x", "--out", str(tmp_path / "m0")])
    assert res.exit_code == 2 and "one query table" in res.output  # both were read as tables
    beside = ["fit", "--queries", str(a), "--data-dir", str(synth_paths.data_dir)]
    res = runner.invoke(
        app, [*beside, "--kg-dir", str(synth_paths.kg_dir), "--cell-lines", "lab_a,nope", "--out", "m1"]
    )
    assert res.exit_code == 2 and len(_error_lines(res)) == 1 and "['nope'] neither in" in res.output
