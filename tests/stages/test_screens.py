"""Every screen counts: cross-line evidence by default, models for some lines only, and a line with no screen
answered from the others."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from coreperturb import fit, load_model
from coreperturb.data import QueryTable, load_perturbqa, write_synthetic
from coreperturb.errors import CorePerturbError
from coreperturb.graph import KnowledgeGraph, build_kg
from coreperturb.stages import FitConfig, predict
from coreperturb.stages._grids import grid_plan, predict_grid
from coreperturb.stages._unscreened import gene_rates, transfer_curves
from tests.stages._answers import own_and_others


def _log_odds_mean(answers: list[np.ndarray]) -> np.ndarray:
    """``expit`` of the answers' log-odds' mean over those that are finite (FitConfig.no_screen_mean)."""
    x = np.vstack(answers).astype(float)
    with np.errstate(divide="ignore"):
        z = np.log(x / (1 - x))
    ok = np.isfinite(z)
    return np.where(
        ok.any(axis=0), expit(np.where(ok, z, 0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1)), np.nan
    )


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
    # synth_b without a model of its own: synth_a's own answer, unblended (as with other_lines_weight 0)
    alone = fit(table, kg, FitConfig(seed=0, other_lines_weight=0))
    own = predict(alone, q)
    assert np.array_equal(
        predict(only_a, q[q["cell_line"] == "synth_a"])["score"].to_numpy(),
        own.loc[own["cell_line"] == "synth_a", "score"].to_numpy(),
    )
    with pytest.raises(CorePerturbError, match="fit_lines names synth_z"):
        fit(table, kg, FitConfig(fit_lines=("synth_z",)))


def test_each_line_blends_its_own_answer_with_the_other_lines(
    two_lines: tuple[QueryTable, KnowledgeGraph],
) -> None:
    from coreperturb.stages._blend import blend_of

    table, kg = two_lines
    # the probabilities' pool, measurements read as labels (the default pool and reading: test_pools.py)
    blend = fit(table, kg, FitConfig(seed=0, other_lines_pool="probabilities", measured_pairs="labels"))
    alone = fit(table, kg, FitConfig(seed=0, other_lines_weight=0))
    assert blend_of(alone, "synth_a", "de", "core_voting") is None
    b = blend_of(blend, "synth_a", "de", "core_voting")
    n = len(blend.training_perturbations("synth_a"))
    assert b is not None and b.sources == ("synth_b",) and b.own_weight == n / (n + 200)
    # synth_b's answer: its measurement where its screen asked the pair, its own model elsewhere
    q, own, other, seen = own_and_others(alone, blend, table)
    got = predict(blend, q)
    want = b.own_weight * own + (1 - b.own_weight) * other
    rule = got["on_target"].to_numpy()  # the modality's rule decides a perturbation's own target
    assert np.allclose(got["score_sample"][~rule], want[~rule], rtol=0, atol=1e-12)
    # the genome map and the calls are calibrated on blended calibration rows, which no answer read
    cal, cal0 = blend.calibration, alone.calibration
    assert cal is not None and cal0 is not None
    assert not np.allclose(cal["score"], cal0["score"])
    assert np.array_equal(cal["label"], cal0["label"])
    # the grid path blends as the query path does
    plan = grid_plan(blend, list(q["perturbation"].unique()[:3]), cell_lines=["synth_a"])
    grid = pd.concat(list(predict_grid(blend, plan)), ignore_index=True)
    rows = predict(blend, grid[["perturbation", "gene"]].assign(cell_line="synth_a"))
    keep = ~grid["on_target"].to_numpy() & np.isfinite(grid["p_de"].to_numpy())
    assert np.allclose(grid["p_de"].to_numpy()[keep], rows["score"].to_numpy()[keep], rtol=0, atol=1e-12)
    # and explain says the same number, and how it was blended
    from coreperturb import explain

    at = grid.loc[keep].iloc[0]
    ex = explain(str(at["perturbation"]), str(at["gene"]), blend, cell_line="synth_a")
    assert abs(ex.p - float(at["p_de"])) < 1e-12 and "synth_b" in ex.blend
    # each other line's part in words: its measurement as such ("p in synth_b: g DE"), else its model's answer
    for i in (np.flatnonzero(np.isfinite(seen) & ~rule)[0], np.flatnonzero(~np.isfinite(seen) & ~rule)[0]):
        pert, gene = str(q.at[i, "perturbation"]), str(q.at[i, "gene"])
        words = explain(pert, gene, blend, cell_line="synth_a").blend
        if np.isfinite(seen[i]):
            said = "DE" if seen[i] == 1 else "not DE"
            assert f"{pert} in synth_b: {gene} {said} (measured)" in words, words
        else:
            assert "synth_b: not measured there, its model 0." in words, words


def test_a_line_answers_without_the_labels_it_is_checked_on(
    two_lines: tuple[QueryTable, KnowledgeGraph],
) -> None:
    from coreperturb.stages._fitted import context_rows

    table, kg = two_lines
    models = fit(table, kg, FitConfig(seed=0, other_lines_weight=0))
    model = models.model("synth_b", "de", "core_voting")
    context = context_rows(models.train, "synth_b", "de")
    p = str(context["perturbation"].iloc[0])
    q = context.loc[context["perturbation"] == p, ["perturbation", "gene"]]
    assert model.features(q)["ctx_pair_n"].gt(0).all()  # synth_b's model reads synth_a's label of each pair
    hidden = model.with_context(context.loc[context["perturbation"] != p])
    assert hidden.features(q)["ctx_pair_n"].eq(0).all() and hidden.model_ is model.model_
    assert model.features(q)["ctx_pair_n"].gt(0).all()  # the model itself is unchanged


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
    blends = {(u["cell_line"], u["task"], u["method"]): u["blend"] for u in meta["units"]}
    n = len(models.training_perturbations("synth_a", "de"))
    assert blends[("synth_a", "de", "core_voting")] == {
        "own_weight": n / (n + 200),
        "other_lines": ["synth_b"],
        "own_perturbations": n,
        "pool": "log_odds",
        "other_lines_mean": "probabilities",
        "measured_pairs": "gene_rates",
        "measured_rates": None,
        "measured_curves": [list(c) for c in transfer_curves(models, "de") or ()],
    }
    assert blends[("synth_a", "de", "gene_frequency")] is None


def test_models_of_earlier_releases_answer_from_their_own_screen() -> None:
    from coreperturb._model_compat import fit_config_of
    from coreperturb._provenance import jsonable

    assert fit_config_of({"methods": ["core_voting"]}).other_lines_weight == 0.0  # no blend: as fitted
    assert fit_config_of(jsonable(FitConfig())).other_lines_weight == 200.0
    with pytest.raises(Exception, match="other_lines_weight must be >= 0"):
        FitConfig(other_lines_weight=-1)


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
    # each screened line's own answer (not blended with the other line's)
    own = dataclasses.replace(models, config=dataclasses.replace(models.config, other_lines_weight=0))
    each = [
        pd.concat(list(predict_grid(own, grid_plan(own, perts, cell_lines=[line]))), ignore_index=True)
        for line in models.cell_lines
    ]
    assert (new["cell_line"] == "hek293").all() and new["flag"].str.contains("no_screen").all()
    assert set(new["gene"]) == set(each[0]["gene"]) | set(each[1]["gene"])
    merged = new.merge(each[0], on=["perturbation", "gene"], suffixes=("", "_a")).merge(
        each[1], on=["perturbation", "gene"], suffixes=("", "_b")
    )
    merged = merged.loc[~merged["on_target"]]
    # each line's answer: its measurement where its screen measured the pair (read as the chance it carries
    # over to another line given the gene's rate, for a line without a screen the screened lines' mean rate:
    # measured_pairs "gene_rates"), its model elsewhere
    curves = transfer_curves(models, "de")
    assert curves is not None and models.config.measured_pairs == "gene_rates"
    rate = np.mean(
        [gene_rates(models, line, "de").reindex(merged["gene"]) for line in models.cell_lines], axis=0
    )
    x = np.log(rate / (1 - rate))
    for suffix, line in (("_a", "synth_a"), ("_b", "synth_b")):
        rows = models.training_rows(line, "de")
        seen = dict(zip(zip(rows["perturbation"], rows["gene"], strict=True), rows["label"], strict=True))
        got = [seen.get(k) for k in zip(merged["perturbation"], merged["gene"], strict=True)]
        merged["p_de" + suffix] = [
            m if v is None else expit(curves[int(v)][0] + curves[int(v)][1] * xi)
            for v, m, xi in zip(got, merged["p_de" + suffix], x, strict=True)
        ]
        assert any(v is not None for v in got)  # a training perturbation of each line
    # averaged on the log-odds scale (FitConfig.no_screen_mean), priors as rates
    assert models.config.no_screen_mean == "log_odds"
    want = _log_odds_mean([merged["p_de_a"].to_numpy(), merged["p_de_b"].to_numpy()])
    assert np.allclose(merged["p_de"], want, equal_nan=True)
    assert np.allclose(merged["p_prior"], (merged["p_prior_a"] + merged["p_prior_b"]) / 2, equal_nan=True)
    assert set(new["call"]) <= {"DE", "not DE", "uncertain"} and (new["call"] != "").all()
    # the rows of a query table say so too, and score the same as the grid
    q = new[["perturbation", "gene"]].head(50).assign(cell_line="hek293", task="de")
    rows = predict(models, q, methods=["core_voting"])
    assert (rows["flag"] == "no_screen").all()
    assert np.allclose(rows["score"], new["p_de"].head(50))


def test_a_query_table_may_name_a_line_with_no_screen(model_dir: Path, tmp_path: Path) -> None:
    """``predict --queries``: rows of a line the model holds no screen of are answered (flagged, warned about),
    beside the rows of a screened line, as ``--cell-lines NEW`` answers them."""
    from coreperturb import predict_to_file

    models = load_model(model_dir)
    q = tmp_path / "q.csv"
    pd.DataFrame(
        {
            "cell_line": ["hek293", "hek293", "synth_a"],
            "perturbation": "G0001",
            "gene": ["G0002", "G0003", "G0002"],
        }
    ).to_csv(q, index=False)
    with pytest.warns(UserWarning, match="'hek293' has no screen in this model"):
        predict_to_file(models, tmp_path / "out.csv", queries=q, methods=["core_voting"])
    out = pd.read_csv(tmp_path / "out.csv")
    new = out.loc[out["cell_line"] == "hek293"]
    assert len(new) == 2 and new["flag"].str.contains("no_screen").all() and new["p_de"].notna().all()
    assert (out["cell_line"] == "synth_a").sum() == 1


def test_rows_of_lines_not_asked_for_are_left_out_with_a_warning(model_dir: Path, tmp_path: Path) -> None:
    """With lines named, a query table's rows of the other lines (screened or not) are not dropped silently."""
    from coreperturb import predict_to_file

    models = load_model(model_dir)
    q = tmp_path / "q.csv"
    pd.DataFrame(
        {"cell_line": ["synth_a", "synth_b", "hek293"], "perturbation": "G0001", "gene": "G0002"}
    ).to_csv(q, index=False)
    out = tmp_path / "out.csv"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rep = predict_to_file(models, out, queries=q, methods=["core_voting"], cell_lines=["synth_a"])
    said = [str(w.message) for w in seen]
    assert any("2 row(s) of cell line(s) synth_b, hek293 left out" in m for m in said)
    assert not any("'hek293' has no screen" in m for m in said)  # not answered, so not announced
    assert list(pd.read_csv(out)["cell_line"]) == ["synth_a"] and rep.cell_lines == ("synth_a",)
    with pytest.raises(CorePerturbError, match="every row names a cell line outside those asked for"):
        predict_to_file(models, tmp_path / "none.csv", queries=q, cell_lines=["hek999"])
    with pytest.warns(UserWarning, match="'hek293' has no screen"):
        rep = predict_to_file(load_model(model_dir), out, queries=q, methods=["core_voting"])
    assert rep.cell_lines == ("synth_a", "synth_b", "hek293") and len(pd.read_csv(out)) == 3


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
    assert "weigh its own model 0.13 and the other lines' 0.87" in notes[0]
    alone = pilot_notes(pilot, FitConfig(fit_lines=("synth_a",)))
    assert len(alone) == 1 and "its own model alone answers" in alone[0]
    assert pilot_notes(pilot, FitConfig(cross_line=False)) == []
    assert pilot_notes(train, FitConfig()) == []  # full screens


def test_a_line_with_no_screen_averages_on_the_tables_scale_then_maps_to_the_genome(
    two_lines: tuple[QueryTable, KnowledgeGraph],
) -> None:
    """Case-control screens: the no-screen answer is the sources' table-scale answers (their measurement where
    they have one) averaged, then each source's genome map averaged over it; grid and queries agree, and the
    pooled calls read the calibration rows on that scale."""
    from coreperturb.stages._unscreened import measured

    table, kg = two_lines
    models = fit(table, kg, FitConfig(seed=0, design="case_control", lists_cut_from=30))
    assert all(models.scale(line, "core_voting") is not None for line in models.cell_lines)
    perts = [str(models.training_perturbations("synth_a")[0]), "G0001"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = pd.concat(list(predict_grid(models, grid_plan(models, perts, cell_lines=["hek293"]))))
    new = new.loc[(new["method"] == "core_voting") & ~new["on_target"]].reset_index(drop=True)
    q = new[["perturbation", "gene"]].assign(cell_line="hek293", task="de")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = predict(models, q, methods=["core_voting"])
        alone = dataclasses.replace(models, config=dataclasses.replace(models.config, other_lines_weight=0))
        own = [
            predict(alone, q.assign(cell_line=line), methods=["core_voting"]) for line in models.cell_lines
        ]
    pairs = (q["perturbation"].to_numpy(), q["gene"].to_numpy())
    parts = []
    for line, o in zip(models.cell_lines, own, strict=True):
        seen = measured(models, line, "de", *pairs)
        assert np.isfinite(seen).any()  # synth_a measured its training perturbation
        parts.append(np.where(np.isfinite(seen) & o["score"].notna(), seen, o["score_sample"]))
    table_scale = _log_odds_mean(parts)
    assert np.allclose(rows["score_sample"], table_scale, equal_nan=True)
    maps = [models.scale(line, "core_voting") for line in models.cell_lines]
    reads = [q["gene"].isin(models.readout_genes(line)).to_numpy() for line in models.cell_lines]
    expected = np.nanmean(
        [np.where(r, m(table_scale), np.nan) for m, r in zip(maps, reads, strict=True)], axis=0
    )
    assert np.allclose(rows["score"], expected, equal_nan=True)
    # a gene no screen reads out: the mean of every line's map, as a screened line answers a gene it never read
    lost = predict(models, q.head(3).assign(gene="NOT_A_READOUT"), methods=["core_voting"])
    every = np.mean([m(lost["score_sample"].to_numpy()) for m in maps], axis=0)
    assert np.isfinite(lost["score"]).all() and np.allclose(lost["score"], every)
    assert not np.allclose(rows["score"], np.nanmean([o["score"] for o in own], axis=0), equal_nan=True)
    assert np.allclose(new["p_de"], rows["score"], rtol=0, atol=1e-12, equal_nan=True)
    assert (new["call"].to_numpy() == rows["call"].to_numpy()).all()
    # the pooled calibration rows go to the genome as the answers do
    from coreperturb.predictors._conformal import MondrianConformal

    conf, cal = models.conformal("hek293", "de", "core_voting"), models.calibration
    assert conf is not None and cal is not None
    arrays = []
    for line in models.cell_lines:
        c = cal.loc[(cal["task"] == "de") & (cal["method"] == "core_voting") & (cal["cell_line"] == line)]
        prior_scale = models.prior_scale(line)
        assert prior_scale is not None
        arrays.append(
            (
                models.no_screen_genome("hek293", "core_voting", c["score"].to_numpy(), c["gene"].to_numpy()),
                c["label"].to_numpy(),
                prior_scale(c["p_prior"].to_numpy()),
                c["gene"].to_numpy(),
                models.calibration_weights(line, c),
            )
        )
    pooled = MondrianConformal.fit(
        *(np.concatenate([a[i] for a in arrays]) for i in range(4)),
        weights=np.concatenate([a[4] for a in arrays]),
    )
    prior = np.linspace(0, 0.2, 50)
    genes = np.full(50, "G0001")
    assert np.array_equal(conf.thresholds(prior, genes), pooled.thresholds(prior, genes))
