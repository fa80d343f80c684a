"""Mondrian conformal calls: the guarantee per prior bin, crepes as the oracle, what an empty set becomes."""

from __future__ import annotations

import numpy as np
import pytest

from coreperturb.predictors._conformal import (
    CALL_DELTA,
    MondrianConformal,
    calibration_split,
    coverage,
    pac_rank,
)


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exchangeable rows: a gene prior, a noisy calibrated score around it, a label drawn from the score."""
    rng = np.random.default_rng(seed)
    prior = rng.beta(0.6, 4.0, n)
    logit = np.log(prior / (1 - prior)) + rng.normal(0, 1.0, n)
    p = 1 / (1 + np.exp(-logit))
    y = (rng.uniform(size=n) < p).astype(np.int64)
    return p, y, prior


def _genes(n: int) -> np.ndarray:
    """A gene per row: no gene has the rows for a category of its own."""
    return np.char.add("g", np.arange(n).astype(str))


def test_sets_equal_crepes_mondrian_classifier() -> None:
    crepes = pytest.importorskip("crepes", reason="crepes (the oracle) is in the [dev] extra")
    p, y, prior = _rows(3000, 0)
    conf = MondrianConformal.fit(p, y, prior, _genes(len(p)))
    cc = crepes.ConformalClassifier().fit(
        np.where(y == 1, 1 - p, p), bins=np.searchsorted(conf.edges, prior, side="right")
    )
    pt, _, prt = _rows(2000, 1)
    for confidence in (0.8, 0.9, 0.95):
        expected = cc.predict_set(
            np.column_stack([pt, 1 - pt]),
            bins=np.searchsorted(conf.edges, prt, side="right"),
            confidence=confidence,
            smoothing=False,
        )
        pos, neg = conf.sets(pt, prt, _genes(len(pt)), confidence)
        np.testing.assert_array_equal(pos, expected[:, 1].astype(bool))
        np.testing.assert_array_equal(neg, expected[:, 0].astype(bool))


def test_coverage_holds_in_every_prior_bin() -> None:
    p, y, prior = _rows(20_000, 2)
    genes = _genes(len(p))
    conf = MondrianConformal.fit(p[:10_000], y[:10_000], prior[:10_000], genes[:10_000])
    pos, neg = conf.sets(p[10_000:], prior[10_000:], genes[10_000:], 0.9)
    strict = coverage(y[10_000:], pos, neg, empty_is_uncertain=False)
    bins = np.searchsorted(conf.edges, prior[10_000:], side="right")
    assert strict.mean() >= 0.89
    for b in np.unique(bins):
        assert strict[bins == b].mean() >= 0.86, b  # ~1,000 rows a bin: 0.9 within sampling noise


def test_empty_sets_and_both_labels_are_uncertain_and_unknown_rows_have_no_call() -> None:
    conf = MondrianConformal(np.array([0.5]), (np.array([0.05, 0.1, 0.2]), np.array([0.3, 0.6, 0.9])))
    # low bin: q = 1 (3 rows cannot reach rank ceil(4 * 0.9) = 4): both labels conform
    calls = conf.calls(np.array([0.5, np.nan, 0.5]), np.array([0.1, 0.1, np.nan]), np.array(["a"] * 3))
    assert list(calls) == ["uncertain", "", ""]
    conf = MondrianConformal(np.zeros(0), (np.linspace(0.01, 0.2, 40),))
    q = MondrianConformal.quantile(np.linspace(0.01, 0.2, 40), 0.9)
    assert q == pytest.approx(np.linspace(0.01, 0.2, 40)[36])
    calls = conf.calls(np.array([0.01, 0.5, 0.99]), np.zeros(3), np.array(["a"] * 3))
    assert list(calls) == ["not DE", "uncertain", "DE"]  # 0.5: neither label conforms (empty set)
    assert list(conf.calls(np.array([0.01, 0.99]), np.zeros(2), np.array(["a"] * 2), task="dir")) == [
        "down",
        "up",
    ]


def test_a_gene_with_enough_rows_is_its_own_category() -> None:
    p, y, prior = _rows(4000, 3)
    genes = np.where(np.arange(4000) < 300, "BUSY", np.char.add("g", np.arange(4000).astype(str)))
    p[:300] = 0.9  # the gene's own scores differ from its prior bin's
    conf = MondrianConformal.fit(p, y, prior, genes, min_gene_rows=200)
    assert conf.genes == ("BUSY",)
    same_prior = np.full(2, prior[0])
    q = conf.thresholds(same_prior, np.array(["BUSY", "g1000"]))
    assert q[0] == MondrianConformal.quantile(conf.gene_scores[0], 0.9) and q[0] != q[1]


def test_calibration_slice_is_whole_perturbations() -> None:
    import pandas as pd

    perts = pd.Series(np.repeat([f"P{i}" for i in range(50)], 4))
    hold = calibration_split(perts, seed=0)
    by_pert = pd.Series(hold).groupby(perts.to_numpy()).agg(["min", "max"])
    assert (by_pert["min"] == by_pert["max"]).all()
    assert 0.1 < hold.mean() < 0.35


def test_training_conditional_rank_holds_for_nine_in_ten_calibration_draws() -> None:
    """Over many calibration draws of 200 rows, the plain rank's coverage (exactly that of a uniform score's
    quantile) falls below 0.9 about half the time; the delta = 0.1 rank about one time in ten or less."""
    rng = np.random.default_rng(11)
    n, draws = 200, 4000
    scores = np.sort(rng.uniform(size=(draws, n)), axis=1)  # nonconformity uniform: coverage = the quantile
    plain = scores[:, int(np.ceil((n + 1) * 0.9)) - 1]
    pac = scores[:, pac_rank(n, 0.9, 0.1) - 1]
    assert 0.35 < (plain < 0.9).mean() < 0.65
    assert 0.05 < (pac < 0.9).mean() <= 0.11
    assert MondrianConformal.quantile(scores[0], 0.9, delta=0.1) == pac[0]
    assert pac_rank(10, 0.9, 0.1) == 11  # 10 rows cannot promise it: every label (q = 1)
    assert MondrianConformal.quantile(scores[0][:10], 0.9, delta=0.1) == 1.0


def test_weighted_rank_uses_the_effective_number_of_rows() -> None:
    s = np.linspace(0.001, 1.0, 1000)
    for n in (50, 300, 1000):  # equal weights: the unweighted rank
        sub = s[:n]
        assert MondrianConformal.quantile(sub, 0.9, np.ones(n), delta=0.1) == MondrianConformal.quantile(
            sub, 0.9, delta=0.1
        )
    w = np.ones(1000)
    w[::10] = 50.0  # 100 rows carry most of the weight: about 190 effective rows, a wider margin
    assert MondrianConformal.quantile(s, 0.9, w, delta=0.1) >= MondrianConformal.quantile(s, 0.9, w)


def test_direction_calls_take_the_training_conditional_rank_and_de_calls_the_plain_one() -> None:
    assert CALL_DELTA == {"dir": 0.1}
    p, y, prior = _rows(3000, 5)
    genes = _genes(len(p))
    conf = MondrianConformal.fit(p, y, prior, genes)
    pt, _, prt = _rows(2000, 6)
    gt = _genes(len(pt))
    for task, delta in (("dir", 0.1), ("de", None)):
        np.testing.assert_array_equal(
            conf.calls(pt, prt, gt, task, 0.9), conf.calls(pt, prt, gt, task, 0.9, delta=delta)
        )
    dir_unc = (conf.calls(pt, prt, gt, "dir", 0.9) == "uncertain").mean()
    plain_unc = (conf.calls(pt, prt, gt, "dir", 0.9, delta=None) == "uncertain").mean()
    assert dir_unc >= plain_unc
