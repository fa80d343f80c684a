"""Every screen counts: cross-line evidence by default, models for some lines only, and a line with no screen
answered from the others."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb import fit, load_model
from coreperturb.data import QueryTable, load_perturbqa, write_synthetic
from coreperturb.errors import CorePerturbError
from coreperturb.graph import KnowledgeGraph, build_kg
from coreperturb.stages import FitConfig, predict
from coreperturb.stages._grids import grid_plan, predict_grid


@pytest.fixture(scope="module")
def two_lines(tmp_path_factory: pytest.TempPathFactory) -> tuple[QueryTable, KnowledgeGraph]:
    paths = write_synthetic(tmp_path_factory.mktemp("two"), seed=1, n_genes=200)
    return load_perturbqa(paths.data_dir, paths.cell_lines, ("de",)), build_kg(paths.kg_dir)


def test_a_fit_of_several_lines_reads_the_other_lines_by_default(
    two_lines: tuple[QueryTable, KnowledgeGraph],
) -> None:
    table, kg = two_lines
    cross = fit(table, kg, FitConfig(seed=0))
    per_line = fit(table, kg, FitConfig(seed=0, cross_line=False))
    assert cross.evidence_lines("synth_a", "de", "core_voting") == ("synth_b",)
    assert cross.evidence_lines("synth_b", "de", "core_voting") == ("synth_a",)
    assert per_line.evidence_lines("synth_a", "de", "core_voting") == ()
    q = table.split("test").head(3000)
    a, b = predict(cross, q), predict(per_line, q)
    assert not np.allclose(a["score"], b["score"])  # the other line's screen changed the answers
    only_a = fit(table, kg, FitConfig(seed=0, fit_lines=("synth_a",)))
    assert only_a.cell_lines == ["synth_a"] and only_a.evidence_lines("synth_a", "de", "core_voting") == (
        "synth_b",
    )
    assert np.allclose(
        predict(only_a, q[q["cell_line"] == "synth_a"])["score"], a.loc[a["cell_line"] == "synth_a", "score"]
    )
    with pytest.raises(CorePerturbError, match="fit_lines names synth_z"):
        fit(table, kg, FitConfig(fit_lines=("synth_z",)))


def test_model_files_record_the_screens_they_learned_from(model_dir: Path) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    screens = {(s["cell_line"], s["task"]): s for s in meta["screens"]}
    models = load_model(model_dir)
    for (line, task), s in screens.items():
        rows = models.training_rows(line, task)
        assert s["rows"] == len(rows) and s["perturbations"] == rows["perturbation"].nunique()
        assert len(s["digest"]) == 64
    assert {u["cell_line"]: u["context_lines"] for u in meta["units"] if u["method"] == "core_voting"} == {
        "synth_a": ["synth_b"],
        "synth_b": ["synth_a"],
    }
    assert models.evidence_lines("synth_a", "de", "core_voting") == ("synth_b",)  # rebuilt on load


def test_a_line_with_no_screen_is_the_mean_of_the_screened_lines(model_dir: Path) -> None:
    models = load_model(model_dir)
    perts = [
        "G0001",
        str(models.training_perturbations("synth_a")[0]),
        str(models.training_perturbations("synth_b")[1]),
    ]
    with pytest.warns(UserWarning, match="'hek293' has no screen in this model: answered from the screens"):
        plan = grid_plan(models, perts, cell_lines=["hek293"])
    new = pd.concat(list(predict_grid(models, plan)), ignore_index=True)
    each = [
        pd.concat(list(predict_grid(models, grid_plan(models, perts, cell_lines=[line]))), ignore_index=True)
        for line in models.cell_lines
    ]
    assert (new["cell_line"] == "hek293").all() and new["flag"].str.contains("no_screen").all()
    assert set(new["gene"]) == set(each[0]["gene"]) | set(each[1]["gene"])
    merged = new.merge(each[0], on=["perturbation", "gene"], suffixes=("", "_a")).merge(
        each[1], on=["perturbation", "gene"], suffixes=("", "_b")
    )
    merged = merged.loc[~merged["on_target"]]
    # each line's answer: its measurement where its screen measured the pair, its model elsewhere
    for suffix, line in (("_a", "synth_a"), ("_b", "synth_b")):
        rows = models.training_rows(line, "de")
        seen = dict(zip(zip(rows["perturbation"], rows["gene"], strict=True), rows["label"], strict=True))
        got = [seen.get(k) for k in zip(merged["perturbation"], merged["gene"], strict=True)]
        merged["p_de" + suffix] = [
            m if v is None else float(v) for v, m in zip(got, merged["p_de" + suffix], strict=True)
        ]
        assert any(v is not None for v in got)  # a training perturbation of each line
    assert np.allclose(merged["p_de"], (merged["p_de_a"] + merged["p_de_b"]) / 2, equal_nan=True)
    assert np.allclose(merged["p_prior"], (merged["p_prior_a"] + merged["p_prior_b"]) / 2, equal_nan=True)
    assert set(new["call"]) <= {"DE", "not DE", "uncertain"} and (new["call"] != "").all()
    # the rows of a query table say so too, and score the same as the grid
    q = new[["perturbation", "gene"]].head(50).assign(cell_line="hek293", task="de")
    rows = predict(models, q, methods=["core_voting"])
    assert (rows["flag"] == "no_screen").all()
    assert np.allclose(rows["score"], new["p_de"].head(50))


def test_a_line_name_close_to_a_screened_one_says_so(model_dir: Path) -> None:
    models = load_model(model_dir)
    with pytest.raises(CorePerturbError, match="did you mean 'synth_a'"):
        models.require_cell_lines(["synth_A1"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        models.require_cell_lines(["synth_A1"], unscreened=True)
    assert any("did you mean 'synth_a'" in str(w.message) for w in seen)


def test_a_pilot_prefers_strong_perturbations_that_reach_the_others(model_dir: Path) -> None:
    from coreperturb.stages import propose_pilot
    from coreperturb.stages._pilots import strength

    models = load_model(model_dir)
    pilot = propose_pilot(models, n=10)
    assert pilot["perturbation"].is_unique and list(pilot["rank"]) == list(range(1, 11))
    assert (np.diff(pilot["gain"].to_numpy()) <= 1e-12).all()  # greedy: each adds less than the one before
    cands = sorted(models.train["perturbation"].unique())
    rate, lines = strength(models, cands)
    assert pilot["de_rate_elsewhere"].mean() > np.nanmean(rate)  # stronger than a random pick
    assert set(lines) <= {0, 1, 2}
    again = propose_pilot(models, n=3, candidates=cands[:40], exclude=cands[:5])
    assert set(again["perturbation"]) <= set(cands[5:40])
    with pytest.raises(CorePerturbError, match="35 candidate perturbations for a pilot of 36"):
        propose_pilot(models, n=36, candidates=cands[:40], exclude=cands[:5])


def test_a_small_pilot_beside_other_screens_is_named(two_lines: tuple[QueryTable, KnowledgeGraph]) -> None:
    from coreperturb.stages._fitting import pilot_notes

    table, _ = two_lines
    frame = table.frame
    train = frame.loc[frame["split"] == "train"]
    few = train.loc[train["cell_line"] == "synth_a", "perturbation"].unique()[:30]
    pilot = train.loc[(train["cell_line"] == "synth_b") | train["perturbation"].isin(few)]
    notes = pilot_notes(pilot, FitConfig())
    assert len(notes) == 1 and notes[0].startswith("synth_a/de: a pilot of 30 perturbations")
    assert pilot_notes(pilot, FitConfig(cross_line=False)) == []
    assert pilot_notes(train, FitConfig()) == []  # full screens
