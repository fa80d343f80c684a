"""The public stages (fit → predict → evaluate) and model files: round trips and every failure case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb._model_files import (
    FORMAT_VERSION,
    MODEL_JSON,
    ModelFileError,
    content_digest,
    load_model,
    read_model_json,
    save_model,
)
from coreperturb._pipeline import BenchmarkConfig, load_inputs, run_benchmark
from coreperturb.data import QueryTable, load_perturbqa
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.graph import KnowledgeGraph
from coreperturb.stages import FitConfig, FittedModels, evaluate_predictions, fit, predict

METHODS = ("gene_frequency", "knn_retrieval", "core_voting", "core_voting_transfer")


@pytest.fixture(scope="module")
def two_lines(tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchmarkConfig, Path]:
    work = tmp_path_factory.mktemp("two_lines")
    return BenchmarkConfig.from_options(methods=METHODS, tasks=("de", "dir")), work


@pytest.fixture(scope="module")
def fitted(two_lines: tuple[BenchmarkConfig, Path]) -> tuple[FittedModels, pd.DataFrame]:
    cfg, work = two_lines
    inputs = load_inputs(cfg, work)
    models = fit(inputs.table, inputs.kg, FitConfig(methods=METHODS), kg_recipe=inputs.kg_recipe)
    test = inputs.table.frame.query("split == 'test'").astype({"cell_line": str, "task": str, "split": str})
    return models, test


def _key(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["cell_line", "task", "method", "perturbation", "gene"]).reset_index(drop=True)


def test_benchmark_is_fit_then_predict_then_evaluate(
    two_lines: tuple[BenchmarkConfig, Path], fitted: tuple[FittedModels, pd.DataFrame]
) -> None:
    cfg, work = two_lines
    res = run_benchmark(cfg, workdir=work)
    models, test = fitted
    preds = predict(models, test)
    a, b = _key(res.predictions), _key(preds)
    assert len(a) == len(b) == len(test) * len(METHODS)
    assert np.abs(a["score"].to_numpy() - b["score"].to_numpy()).max() <= 1e-12
    assert (a["n_pos_evidence"].to_numpy() == b["n_pos_evidence"].to_numpy()).all()
    m = evaluate_predictions(preds, models.thresholds, kg=models.kg, models=models)
    key = ["cell_line", "task", "method", "metric"]
    joined = res.metrics.merge(m, on=key, suffixes=("_bench", "_stages"))
    assert len(joined) == len(res.metrics)
    assert np.allclose(joined["value_bench"], joined["value_stages"], equal_nan=True)


def test_model_file_round_trip_gives_identical_scores(
    fitted: tuple[FittedModels, pd.DataFrame], tmp_path: Path
) -> None:
    models, test = fitted
    before = predict(models, test)
    save_model(models, tmp_path / "m")
    meta = read_model_json(tmp_path / "m")
    assert (
        meta["format_version"] == FORMAT_VERSION and meta["seed"] == 0 and "scikit-learn" in meta["packages"]
    )
    assert meta["content_sha256"] == content_digest(meta)
    assert {u["method"] for u in meta["units"]} == set(METHODS)
    assert set(meta["files"]) == {
        "train.parquet",
        "estimators.npz",  # every built-in estimator as plain arrays: no skops file
        "kg.npz",
        "kg.json",
        "calibration.parquet",
    }
    assert meta["fit_config"]["modality"] == "crispri"
    loaded = load_model(tmp_path / "m")
    kinds = {type(e).__name__ for m in loaded.models.values() for e in m.fitted_state().estimators.values()}
    assert kinds <= {"ForestArrays", "LinearArrays"} and "ForestArrays" in kinds
    after = predict(loaded, test)
    assert np.array_equal(before["score"].to_numpy(), after["score"].to_numpy())
    assert before["call"].equals(after["call"])
    # a loaded model saves again to the same arrays
    save_model(loaded, tmp_path / "again")
    assert (tmp_path / "again" / "estimators.npz").read_bytes() == (
        tmp_path / "m" / "estimators.npz"
    ).read_bytes()
    # the KG can also be referenced (content hash + how to rebuild it) instead of embedded
    save_model(models, tmp_path / "ref", kg_store="reference")
    assert not (tmp_path / "ref" / "kg.npz").exists()
    again = predict(load_model(tmp_path / "ref"), test)
    assert np.array_equal(before["score"].to_numpy(), again["score"].to_numpy())


def test_save_refuses_to_clobber(fitted: tuple[FittedModels, pd.DataFrame], tmp_path: Path) -> None:
    models, _ = fitted
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "x.txt").write_text("mine")
    with pytest.raises(ModelFileError, match="is not a coreperturb model directory"):
        save_model(models, tmp_path / "notes")
    save_model(models, tmp_path / "m")
    with pytest.raises(ModelFileError, match="replace it on purpose"):
        save_model(models, tmp_path / "m")
    save_model(models, tmp_path / "m", overwrite=True)


@pytest.fixture()
def saved(fitted: tuple[FittedModels, pd.DataFrame], tmp_path: Path) -> Path:
    models, _ = fitted
    single = FittedModels(
        models.kg,
        {k: v for k, v in models.models.items() if k[2] == "core_voting"},
        models.train,
        models.config,
        models.kg_recipe,
    )
    return save_model(single, tmp_path / "model")


def _load_error(model: Path) -> str:
    """The message loading ``model`` fails with: a ModelFileError, which the command line prints as one line
    (tests/cli/test_predict.py checks that rendering)."""
    with pytest.raises(ModelFileError) as info:
        load_model(model)
    return str(info.value)


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="model directory not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "not a coreperturb model directory" in _load_error(tmp_path / "empty")


def test_truncated_files_are_named(saved: Path) -> None:
    data = (saved / "train.parquet").read_bytes()
    (saved / "train.parquet").write_bytes(data[: len(data) // 2])
    out = _load_error(saved)
    assert "train.parquet: sha256 does not match model.json (truncated or modified)" in out
    (saved / MODEL_JSON).write_text((saved / MODEL_JSON).read_text()[:100])
    with pytest.raises(ModelFileError, match=r"model\.json: not valid JSON"):
        load_model(saved)


def test_missing_file_is_named(saved: Path) -> None:
    (saved / "estimators.npz").unlink()
    assert "estimators.npz: file missing from the model directory" in _load_error(saved)


def _reseal_files(d: Path, meta: dict[str, object]) -> None:
    from coreperturb.report._outputs import sha256_file

    files = meta["files"]
    assert isinstance(files, dict)
    for name in list(files):
        files[name] = sha256_file(d / name)
    meta["content_sha256"] = content_digest(meta)
    (d / MODEL_JSON).write_text(json.dumps(meta))


def test_estimator_arrays_that_do_not_form_trees_are_refused(saved: Path) -> None:
    with np.load(saved / "estimators.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = next(k for k in arrays if k.endswith(".left"))
    arrays[key] = arrays[key] + 10**6  # children outside the arrays
    with open(saved / "estimators.npz", "wb") as fh:
        np.savez(fh, **arrays)
    _reseal_files(saved, json.loads((saved / MODEL_JSON).read_text()))
    with pytest.raises(
        ModelFileError, match=r"estimators\.npz: .* cannot be rebuilt: a tree node points outside"
    ):
        load_model(saved)


def test_format_2_models_with_skops_estimators_still_load(
    fitted: tuple[FittedModels, pd.DataFrame], saved: Path
) -> None:
    """A model of the previous format (every estimator in estimators.skops) predicts the same numbers."""
    import skops.io as sio

    models, test = fitted
    meta = json.loads((saved / MODEL_JSON).read_text())
    est = {}
    for u in meta["units"]:
        key = (u["cell_line"], u["task"], u["method"])
        for name, e in models.models[key].fitted_state().estimators.items():
            est["/".join((*key, name))] = e  # the scikit-learn objects of the fit
        u.pop("estimator_kinds")
    sio.dump(est, saved / "estimators.skops")
    (saved / "estimators.npz").unlink()
    del meta["files"]["estimators.npz"]
    meta["files"]["estimators.skops"] = ""
    meta["format_version"] = 2
    _reseal_files(saved, meta)
    old = load_model(saved)
    kinds = {type(e).__name__ for m in old.models.values() for e in m.fitted_state().estimators.values()}
    assert "HistGradientBoostingClassifier" in kinds
    rows = test.loc[test["task"] == "de"]
    a = predict(old, rows, methods=["core_voting"])
    b = predict(models, rows, methods=["core_voting"])
    assert np.array_equal(a["score"].to_numpy(), b["score"].to_numpy())


def test_other_format_version(saved: Path) -> None:
    meta = json.loads((saved / MODEL_JSON).read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    meta["coreperturb_version"] = "9.0.0"
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    out = _load_error(saved)
    assert (
        f"model format {FORMAT_VERSION + 1} (written by coreperturb 9.0.0)" in out
        and "upgrade coreperturb" in out
    )


def test_unchanged_kg_files_skip_the_content_hash(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The KG files the content hash was computed with are recorded; while they match, no rehash."""
    import coreperturb._model_files as mf

    meta = json.loads((saved / MODEL_JSON).read_text())
    assert meta["kg"]["hashed_files"] == {n: meta["files"][n] for n in ("kg.npz", "kg.json")}
    before = load_model(saved)

    def no_rehash(kg: object) -> str:
        raise AssertionError("the KG's content hash was recomputed for unchanged files")

    monkeypatch.setattr(mf, "kg_hash", no_rehash)
    after = load_model(saved)
    assert list(after.kg.genes) == list(before.kg.genes)
    # a model saved before the record (no hashed_files) still has its KG checked
    del meta["kg"]["hashed_files"]
    meta["content_sha256"] = content_digest(meta)
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(AssertionError, match="recomputed"):
        load_model(saved)


def test_tampered_kg_with_updated_checksums_is_refused(saved: Path) -> None:
    """Even with model.json's checksums updated, a KG with other content is caught by its content hash."""
    from coreperturb.graph._store import load_kg, save_kg
    from coreperturb.report._outputs import sha256_file

    kg = load_kg(saved)
    rel = next(iter(kg.relations.values()))
    rel.matrix.data[:] = rel.matrix.data * 1.5  # other weights, same shape
    save_kg(kg, saved)
    meta = json.loads((saved / MODEL_JSON).read_text())
    for name in ("kg.npz", "kg.json"):
        meta["files"][name] = sha256_file(saved / name)
    meta["content_sha256"] = content_digest(meta)  # even with model.json's own digest updated
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="differs from the KG the model was fitted on"):
        load_model(saved)


def test_referenced_kg_that_changed_is_refused(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    kg_dir = tmp_path / "kg"
    shutil.copytree(synth_paths.kg_dir, kg_dir)
    cfg = BenchmarkConfig.from_options(data_dir=synth_paths.data_dir, kg_dir=kg_dir, cell_lines=("synth_a",))
    inputs = load_inputs(cfg, tmp_path)
    models = fit(inputs.table, inputs.kg, FitConfig(methods=("gene_frequency",)), kg_recipe=inputs.kg_recipe)
    save_model(models, tmp_path / "m", kg_store="reference")
    load_model(tmp_path / "m")  # unchanged files: fine
    net = kg_dir / "gene_network.tsv"
    lines = net.read_text().splitlines()
    net.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    with pytest.raises(ModelFileError, match="differs from the KG the model was fitted on"):
        load_model(tmp_path / "m")


def test_untrusted_estimator_types_are_refused(
    synth_table: object, synth_kg: KnowledgeGraph, tmp_path: Path
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    table = load_perturbqa(Path(synth_table.source), ["synth_a"], ["de"])  # type: ignore[attr-defined]
    cv = fit(table, synth_kg, FitConfig(methods=("core_voting",)))
    model = cv.models[("synth_a", "de", "core_voting")]
    model.combiner = RandomForestClassifier(n_estimators=5, random_state=0)  # type: ignore[attr-defined]
    model.fit(table.split("train"))
    save_model(cv, tmp_path / "rf")
    with pytest.raises(ModelFileError, match="holds types that are not trusted"):
        load_model(tmp_path / "rf")
    trusted = ["sklearn.tree._tree.Tree"]
    p0 = model.predict_proba(table.split("test"))[:, 1]
    p1 = load_model(tmp_path / "rf", trusted=trusted).models[("synth_a", "de", "core_voting")]
    assert np.array_equal(p0, p1.predict_proba(table.split("test"))[:, 1])


def test_evaluate_leaves_out_unscored_rows() -> None:
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(
        {
            "cell_line": "x",
            "task": "de",
            "method": "llm_isolated",
            "perturbation": [f"P{i % 40}" for i in range(n)],
            "gene": [f"G{i % 10}" for i in range(n)],
            "label": rng.integers(0, 2, n),
            "score": rng.random(n),
        }
    )
    df.loc[:49, "score"] = np.nan
    m = evaluate_predictions(df).set_index("metric")["value"]
    assert m["n_scored"] == 350 and m["n_errors"] == 50
    assert np.isfinite(m["auroc"]) and np.isfinite(m["macro_per_gene_auroc"])


def test_fit_config_of_earlier_releases_is_read() -> None:
    from coreperturb._model_compat import fit_config_of

    old = {
        "methods": ["core_voting", "core_reasoning"],
        "seed": 3,
        "dataset": "lincs",
        "llm": {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1", "timeout": 5.0},
        "calibration_queries": 10,
        "cache_path": "/tmp/answers.sqlite",
        "reasoning_tokens": 32,
        "executor": "local",
    }
    cfg = fit_config_of(old)
    assert cfg.methods == ("core_voting", "core_reasoning") and cfg.seed == 3 and cfg.dataset == "lincs"
    llm = cfg.llm_config
    assert (llm.llm, llm.llm_model, llm.base_url, llm.timeout) == (
        "openai",
        "m",
        "http://127.0.0.1:1/v1",
        5.0,
    )
    assert llm.calibration_queries == 10 and llm.reasoning_tokens == 32
    assert str(llm.response_cache) == "/tmp/answers.sqlite"


def _resealed(saved: Path, edit: object) -> Path:
    """model.json edited on purpose, with its digest recomputed (as someone editing deliberately would)."""
    meta = json.loads((saved / MODEL_JSON).read_text())
    if callable(edit):
        edit(meta)
    meta["content_sha256"] = content_digest(meta)
    (saved / MODEL_JSON).write_text(json.dumps(meta))
    return saved


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ('{"format": "coreperturb-model", "seed": ' + "9" * 100_000 + "}", "not valid JSON"),
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    ],
)
def test_json_that_python_cannot_read_is_one_error(saved: Path, raw: str, why: str) -> None:
    (saved / MODEL_JSON).write_text(raw)
    assert why in _load_error(saved)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda m: m["fit_config"].__setitem__("methods", 123), "fit_config.methods"),
        (lambda m: m.__setitem__("format_version", "2"), "model format 2"),
        (lambda m: m.__setitem__("format_version", True), "model format True"),
        (lambda m: m["units"][0].__setitem__("params", [1, 2]), "units.0.params"),
        (lambda m: m.__setitem__("files", {"train.parquet": 5}), "files.train.parquet"),
    ],
)
def test_valid_json_that_we_did_not_write_is_refused_before_use(saved: Path, edit: object, why: str) -> None:
    _resealed(saved, edit)
    assert why in _load_error(saved)


def test_genome_scale_round_trips_and_says_its_design(
    synth_table: QueryTable, synth_kg: KnowledgeGraph, tmp_path: Path
) -> None:
    """A case-control fit keeps its design in model.json; the loaded model gives the same genome-scale
    numbers, gene_frequency's excess is exactly 0 and the table's scale is kept beside the genome's."""
    cfg = FitConfig(methods=("gene_frequency", "core_voting"), design="case_control", lists_cut_from=30)
    frame = synth_table.frame[synth_table.frame["cell_line"] == synth_table.cell_lines[0]]
    models = fit(frame, synth_kg, cfg)
    line = models.cell_lines[0]
    assert models.scale_name(line) == "genome" and models.scale(line, "core_voting") is not None
    test = frame[(frame["split"] == "test") & (frame["task"] == "de")]
    before = predict(models, test)
    save_model(models, tmp_path / "m")
    meta = read_model_json(tmp_path / "m")
    design = meta["sampling_design"]
    assert (design["kind"], design["lists_cut_from"], design["source"]) == ("case_control", 30, "stated")
    assert design["scale"] == {line: "genome"} and design["lines"][line]["perturbations"] > 0
    assert 0 < design["lines"][line]["asking_factor_top"] < 5  # recorded, a relative asking rate
    loaded = load_model(tmp_path / "m")
    after = predict(loaded, test)
    assert np.array_equal(before["score"].to_numpy(), after["score"].to_numpy())
    assert np.array_equal(before["call"].to_numpy(), after["call"].to_numpy())
    cv = before[before["method"] == "core_voting"]
    # the genome map is increasing: the same order as the table's scale, lower numbers (the on-target rule
    # decides its rows on both columns alike)
    cv = cv[~cv["on_target"]]
    order = np.argsort(cv["score_sample"].to_numpy(), kind="stable")
    assert (np.diff(cv["score"].to_numpy()[order]) >= 0).all()
    assert cv["score"].mean() < cv["score_sample"].mean()
    gf = before[(before["method"] == "gene_frequency") & ~before["on_target"]]
    assert np.abs(gf["excess"].to_numpy()).max() < 1e-12
    m = evaluate_predictions(before, models.thresholds, models=models)
    assert {"genome_de_ratio", "genome_coverage"} <= set(m["metric"])
