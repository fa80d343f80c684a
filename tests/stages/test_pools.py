"""How a line's own answer meets the other lines': the pool (probabilities or log-odds) and how another line's
measurement of a pair is read (its label, or the chance it carries over, from the pairs two lines both asked)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from coreperturb import explain, fit
from coreperturb.data import QueryTable, load_perturbqa, write_synthetic
from coreperturb.graph import KnowledgeGraph, build_kg
from coreperturb.stages import FitConfig, FittedModels, predict
from tests.stages._answers import own_and_others


@pytest.fixture(scope="module")
def two_lines(tmp_path_factory: pytest.TempPathFactory) -> tuple[QueryTable, KnowledgeGraph, FittedModels]:
    paths = write_synthetic(tmp_path_factory.mktemp("pools"), seed=1, n_genes=200)
    table, kg = load_perturbqa(paths.data_dir, paths.cell_lines, ("de",)), build_kg(paths.kg_dir)
    return table, kg, fit(table, kg, FitConfig(seed=0))


def _with(models: FittedModels, **changes: object) -> FittedModels:
    return dataclasses.replace(models, config=dataclasses.replace(models.config, **changes))


def test_transfer_rates_count_the_pairs_two_lines_both_asked(
    two_lines: tuple[QueryTable, KnowledgeGraph, FittedModels],
) -> None:
    from coreperturb.stages._unscreened import TRANSFER_PRIOR, measured, transfer_rates

    table, _, models = two_lines
    train = table.split("train")
    labels = {
        line: rows.drop_duplicates(["perturbation", "gene"]).set_index(["perturbation", "gene"])["label"]
        for line, rows in train.groupby("cell_line", observed=True)
    }
    hits, pairs = np.zeros(2), np.zeros(2)
    for s, t in itertools.permutations(labels, 2):
        both = pd.concat([labels[s].rename("s"), labels[t].rename("t")], axis=1, join="inner")
        for label in (0, 1):
            hits[label] += both.loc[both["s"] == label, "t"].sum()
            pairs[label] += (both["s"] == label).sum()
    assert pairs.min() > 100  # the synthetic lines share perturbations
    base = hits.sum() / pairs.sum()
    want = (hits + TRANSFER_PRIOR * base) / (pairs + TRANSFER_PRIOR)
    got = transfer_rates(models, "de")
    assert got is not None and np.allclose(got, want, rtol=0, atol=1e-12)
    # read as rates, a measured DE pair is q1, a measured not-DE pair q0; unmeasured pairs stay NaN
    rows = models.training_rows("synth_b", "de")
    perts, genes = rows["perturbation"].to_numpy(), rows["gene"].to_numpy()
    as_labels = measured(_with(models, measured_pairs="labels"), "synth_b", "de", perts, genes)
    as_rates = measured(_with(models, measured_pairs="rates"), "synth_b", "de", perts, genes)
    assert np.array_equal(as_labels, rows["label"].to_numpy(dtype=float))
    assert np.allclose(as_rates, np.where(as_labels == 1, got[1], got[0]), rtol=0, atol=0)
    missing = measured(_with(models, measured_pairs="rates"), "synth_b", "de", np.array(["NOPE"]), genes[:1])
    assert np.isnan(missing).all()
    # lines that share no pair say nothing of how a measurement carries over: their models answer instead
    train, in_b = models.train, models.train["cell_line"] == "synth_b"
    names = train["perturbation"].astype(str)
    apart = train.assign(perturbation=np.where(in_b, "b_" + names, names))
    unrelated = dataclasses.replace(_with(models, measured_pairs="rates"), train=apart)
    assert transfer_rates(unrelated, "de") is None
    assert np.isnan(measured(unrelated, "synth_b", "de", "b_" + perts.astype(str), genes)).all()


def test_the_log_odds_pool_mixes_log_odds_and_reads_measurements_as_rates(
    two_lines: tuple[QueryTable, KnowledgeGraph, FittedModels],
) -> None:
    from coreperturb.stages._blend import blend_of
    from coreperturb.stages._unscreened import transfer_rates

    table, _, models = two_lines
    pooled = _with(models, other_lines_pool="log_odds", measured_pairs="rates")
    alone = _with(models, other_lines_weight=0)
    b = blend_of(pooled, "synth_a", "de", "core_voting")
    assert b is not None and b.pool == "log_odds"
    q, own, other, seen = own_and_others(alone, pooled, table)
    w = b.own_weight
    want = expit(w * np.log(own / (1 - own)) + (1 - w) * np.log(other / (1 - other)))
    got = predict(pooled, q)
    rule = got["on_target"].to_numpy()
    assert np.allclose(got["score_sample"][~rule], want[~rule], rtol=0, atol=1e-9)
    # the probabilities' pool of the same answers differs: the pool is a real choice
    linear = predict(_with(models, other_lines_pool="probabilities"), q)["score_sample"].to_numpy()
    assert not np.allclose(linear[~rule], want[~rule])
    # explain says how the other line's measurement was read
    rates = transfer_rates(pooled, "de")
    assert rates is not None
    i = int(np.flatnonzero(np.isfinite(seen) & ~rule)[0])
    pert, gene = str(q.at[i, "perturbation"]), str(q.at[i, "gene"])
    ex = explain(pert, gene, pooled, cell_line="synth_a")
    said = "DE" if seen[i] == rates[1] else "not DE"
    assert f"{pert} in synth_b: {gene} {said} (measured, read as {seen[i]:.3f} here)" in ex.blend, ex.blend
    assert "the log-odds of this line's own answer" in ex.blend


def test_pools_and_readings_are_checked_and_models_of_earlier_releases_keep_theirs() -> None:
    from coreperturb._model_compat import fit_config_of
    from coreperturb._provenance import jsonable

    with pytest.raises(Exception, match="other_lines_pool must be one of probabilities, log_odds"):
        FitConfig(other_lines_pool="geometric")
    with pytest.raises(Exception, match="measured_pairs one of labels, rates, gene_rates"):
        FitConfig(measured_pairs="soft")
    old = fit_config_of({"methods": ["core_voting"], "other_lines_weight": 200.0})
    assert (old.other_lines_pool, old.measured_pairs) == ("probabilities", "labels")
    new = FitConfig(other_lines_pool="log_odds", measured_pairs="rates")
    again = fit_config_of(jsonable(new))
    assert (again.other_lines_pool, again.measured_pairs) == ("log_odds", "rates")


def test_gene_rates_read_a_measurement_given_how_often_the_gene_is_de_in_the_line_answered(
    two_lines: tuple[QueryTable, KnowledgeGraph, FittedModels],
) -> None:
    from coreperturb.stages._blend import blend_record
    from coreperturb.stages._unscreened import (
        GENE_RATE_PRIOR,
        gene_rates,
        measured,
        measured_labels,
        target_rates,
        transfer_curves,
    )

    table, _, models = two_lines
    reading = _with(models, measured_pairs="gene_rates")
    train = table.split("train").drop_duplicates(["cell_line", "perturbation", "gene"])
    labels = {
        line: rows.set_index(["perturbation", "gene"])["label"].astype(float)
        for line, rows in train.groupby("cell_line", observed=True)
    }
    # a gene's rate in a line, shrunk towards the line's rate
    a = labels["synth_a"]
    by = a.groupby(level="gene")
    want_rate = (by.sum() + GENE_RATE_PRIOR * a.mean()) / (by.size() + GENE_RATE_PRIOR)
    got_rate = gene_rates(reading, "synth_a", "de")
    assert np.allclose(got_rate.reindex(want_rate.index).to_numpy(), want_rate.to_numpy(), rtol=0, atol=1e-12)
    # the curves: each measurement's logistic fit on the pairs both lines asked, the pair left out of the rate
    x, s, t = [], [], []
    for src, tgt in itertools.permutations(labels, 2):
        both = pd.concat([labels[src].rename("s"), labels[tgt].rename("t")], axis=1, join="inner")
        tb = labels[tgt].groupby(level="gene")
        g = both.index.get_level_values("gene")
        r = (tb.sum().reindex(g).to_numpy() - both["t"].to_numpy() + GENE_RATE_PRIOR * labels[tgt].mean()) / (
            tb.size().reindex(g).to_numpy() - 1 + GENE_RATE_PRIOR
        )
        x.append(np.log(r / (1 - r)))
        s.append(both["s"].to_numpy())
        t.append(both["t"].to_numpy())
    xx, ss, tt = np.concatenate(x), np.concatenate(s), np.concatenate(t)
    curves = transfer_curves(reading, "de")
    assert curves is not None
    for label, (a0, b0) in enumerate(curves):
        on = ss == label
        # a logistic fit with an intercept predicts as many DE pairs as it was shown, and a gene that is DE more
        # often here is more likely DE after the same measurement
        assert np.isclose(expit(a0 + b0 * xx[on]).sum(), tt[on].sum(), rtol=1e-3)
        assert b0 > 0.3
    # read for synth_a: each pair's chance follows its gene's rate in synth_a, measured pairs only
    rows = models.training_rows("synth_a", "de")
    perts, genes = rows["perturbation"].to_numpy(), rows["gene"].to_numpy()
    seen = measured(reading, "synth_b", "de", perts, genes, target="synth_a")
    seen_b = measured_labels(models, "synth_b", "de", perts, genes)
    rate = target_rates(reading, "de", genes.astype(str), "synth_a")
    (a0, b0), (a1, b1) = curves
    want = np.where(
        seen_b == 1, expit(a1 + b1 * np.log(rate / (1 - rate))), expit(a0 + b0 * np.log(rate / (1 - rate)))
    )
    assert np.allclose(seen, np.where(np.isfinite(seen_b), want, np.nan), rtol=0, atol=1e-12, equal_nan=True)
    # a line without a screen of its own reads the mean of the lines' rates
    none = target_rates(reading, "de", genes.astype(str), "new_line")
    mean = (
        gene_rates(reading, "synth_a", "de").reindex(genes)
        + gene_rates(reading, "synth_b", "de").reindex(genes)
    ) / 2
    ok = mean.notna().to_numpy()
    assert np.allclose(none[ok], mean.to_numpy()[ok], rtol=0, atol=1e-12)
    # model.json records the curves
    record = blend_record(reading, "synth_a", "de", "core_voting")
    assert record is not None and record["measured_curves"] == [list(c) for c in curves]


def test_several_lines_average_their_probabilities_or_their_log_odds(
    two_lines: tuple[QueryTable, KnowledgeGraph, FittedModels],
) -> None:
    """A line with no screen (here two sources) is ``expit`` of their log-odds' mean by default
    (``no_screen_mean``), their mean with ``probabilities``; the blend's other lines (``other_lines_mean``) are
    averaged as probabilities by default; models of earlier releases averaged probabilities throughout."""
    from coreperturb._model_compat import fit_config_of
    from coreperturb.stages._unscreened import lines_mean

    table, _, models = two_lines
    a, b = np.array([0.1, 0.5, np.nan, np.nan]), np.array([0.9, 0.2, 0.3, np.nan])
    assert np.allclose(lines_mean([a, b], "probabilities"), [0.5, 0.35, 0.3, np.nan], equal_nan=True)
    want = expit((np.log(0.5 / 0.5) + np.log(0.2 / 0.8)) / 2)
    assert np.allclose(lines_mean([a, b], "log_odds"), [0.5, want, 0.3, np.nan], equal_nan=True)
    assert (models.config.no_screen_mean, models.config.other_lines_mean) == ("log_odds", "probabilities")
    probs = _with(models, no_screen_mean="probabilities")
    q = table.split("test")
    q = q.loc[q["cell_line"] == "synth_a"].head(400).reset_index(drop=True)
    new = q.assign(cell_line="hek293")
    with pytest.warns(UserWarning, match="no screen"):
        p, o = (predict(m, new, methods=["core_voting"])["score_sample"].to_numpy() for m in (probs, models))
    assert np.isfinite(o).all() and not np.allclose(p, o)
    # where neither line measured the pair, their models answer: the log-odds' mean, or the mean, of those
    unseen = np.ones(len(q), dtype=bool)
    for line in ("synth_a", "synth_b"):
        rows = models.training_rows(line, "de")
        asked = set(zip(rows["perturbation"], rows["gene"], strict=True))
        unseen &= ~np.array([k in asked for k in zip(q["perturbation"], q["gene"], strict=True)])
    assert unseen.sum() > 100
    alone = _with(models, other_lines_weight=0)
    own = [
        predict(alone, q.assign(cell_line=line))["score_sample"].to_numpy() for line in ("synth_a", "synth_b")
    ]
    logits = np.mean([np.log(x / (1 - x)) for x in own], axis=0)
    assert np.allclose(o[unseen], expit(logits)[unseen], rtol=0, atol=1e-9)
    assert np.allclose(p[unseen], np.mean(own, axis=0)[unseen], rtol=0, atol=1e-9)
    # synth_a's blend has one other line: its mean is that line's answer whichever way lines are averaged
    one, other = (predict(_with(models, other_lines_mean=m), q)["score"].to_numpy() for m in POOL_NAMES)
    assert np.allclose(one, other, rtol=0, atol=1e-12)
    old = fit_config_of({"methods": ["core_voting"], "other_lines_weight": 200.0})
    assert (old.other_lines_mean, old.no_screen_mean) == ("probabilities", "probabilities")
    with pytest.raises(
        Exception, match="no_screen_mean must be one of probabilities, log_odds; got 'median'"
    ):
        FitConfig(no_screen_mean="median")


POOL_NAMES = ("probabilities", "log_odds")
