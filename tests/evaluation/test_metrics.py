from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from coreperturb.evaluation import METRICS, best_f1_threshold, evaluate, reliability_bins


def _fixture(seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 600
    genes = rng.choice([f"g{i}" for i in range(25)], n)
    perts = rng.choice([f"p{i}" for i in range(40)], n)
    y = (rng.random(n) < 0.3).astype(int)
    s = np.round(np.clip(0.3 * y + rng.random(n) * 0.8, 0, 1), 2)  # rounded: ties exercised
    return y, s, genes, perts


def test_macro_per_gene_matches_sklearn() -> None:
    y, s, g, p = _fixture()
    expected, n = [], 0
    for gene in np.unique(g):
        m = g == gene
        if 0 < y[m].sum() < m.sum():
            expected.append(roc_auc_score(y[m], s[m]))
            n += 1
    assert METRICS.get("macro_per_gene_auroc")(y, s, g, p, 0.5) == pytest.approx(np.mean(expected), abs=1e-12)
    assert METRICS.get("n_genes_per_gene_auroc")(y, s, g, p, 0.5) == n
    assert METRICS.get("auroc")(y, s, g, p, 0.5) == pytest.approx(roc_auc_score(y, s))


def test_constant_within_gene_is_exactly_half() -> None:
    y, _, g, p = _fixture(1)
    rate = {gene: y[g == gene].mean() for gene in np.unique(g)}
    s = np.array([rate[x] for x in g])
    assert METRICS.get("macro_per_gene_auroc")(y, s, g, p, 0.5) == 0.5


def test_rows_without_a_score_are_left_out_not_ranked_as_misses() -> None:
    y, s, g, p = _fixture(2)
    gap = s.copy()
    gap[::7] = np.nan
    kept = np.isfinite(gap)
    got = METRICS.get("macro_per_gene_auroc")(y, gap, g, p, 0.5)
    assert got == pytest.approx(METRICS.get("macro_per_gene_auroc")(y[kept], s[kept], g[kept], p[kept], 0.5))


def test_single_class_genes_are_skipped() -> None:
    y = np.array([1, 1, 0, 1])
    s = np.array([0.9, 0.1, 0.2, 0.8])
    g = np.array(["a", "a", "b", "b"])
    assert METRICS.get("n_genes_per_gene_auroc")(y, s, g, g, 0.5) == 1
    assert METRICS.get("macro_per_gene_auroc")(y, s, g, g, 0.5) == 1.0


def test_calibration_metrics() -> None:
    y = np.array([0, 0, 1, 1])
    s = np.array([0.05, 0.05, 0.95, 0.95])
    assert METRICS.get("ece")(y, s, y, y, 0.5) == pytest.approx(0.05)
    assert METRICS.get("brier")(y, s, y, y, 0.5) == pytest.approx(0.0025)
    rb = reliability_bins(y, s)
    assert rb["count"].sum() == 4 and len(rb) == 10
    assert METRICS.get("pred_pos_rate")(y, s, y, y, 0.5) == 0.5


def test_best_f1_threshold_and_bootstrap() -> None:
    y = np.array([0, 0, 1, 1, 1])
    s = np.array([0.1, 0.6, 0.5, 0.7, 0.9])
    thr = best_f1_threshold(y, s)
    assert thr == 0.5
    yb, sb, g, p = _fixture(2)
    out = evaluate(yb, sb, g, p, n_bootstrap=30).set_index("metric")
    lo, hi, v = out.loc["auroc", ["ci_low", "ci_high", "value"]]
    assert lo <= v <= hi and lo < hi


def test_weighted_bootstrap_equals_recomputing_each_resample() -> None:
    """Every bootstrap resample as a row of perturbation weights gives exactly the metric of the resample
    with its rows repeated (ties, genes with one class and empty classes included)."""
    from coreperturb.evaluation._bootstrap import WEIGHTED_METRICS, bootstrap_draws
    from coreperturb.evaluation._metrics import METRICS

    rng = np.random.default_rng(3)
    n = 600
    perts = np.array([f"P{i % 40}" for i in range(n)])
    genes = np.array([f"G{i % 17}" for i in range(n)])
    y = (rng.random(n) < 0.3).astype(np.int64)
    y[genes == "G3"] = 0  # a gene with one class
    s = np.round(rng.random(n) * 0.5 + 0.3 * y, 2)  # rounded: many ties
    counts, codes = bootstrap_draws(perts, 25, seed=1)
    w = counts[:, codes]
    members = pd.Series(np.arange(n)).groupby(codes).indices
    for m in WEIGHTED_METRICS:
        got = WEIGHTED_METRICS.get(m)(y.astype(float), s, genes, perts, 0.4, w)
        for b in range(len(counts)):
            idx = np.concatenate([np.repeat(members[k], int(c)) for k, c in enumerate(counts[b]) if c])
            want = METRICS.get(m)(y[idx], s[idx], genes[idx], perts[idx], 0.4)
            assert got[b] == pytest.approx(want, abs=1e-12, nan_ok=True), (m, b)


def test_no_scored_row_gives_empty_scores_not_zeros() -> None:
    """An LLM method that failed on every query: ECE / F1 are empty, not 0.0 (ECE 0 reads as perfect)."""
    empty = np.array([])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "Mean of empty slice" for the user to read
        out = evaluate(empty, empty, empty, empty).set_index("metric")["value"]
    assert np.isnan(out["ece"]) and np.isnan(out["f1"]) and np.isnan(out["brier"])
    assert np.isnan(out["pred_pos_rate"]) and np.isnan(out["true_pos_rate"]) and np.isnan(out["mean_score"])
    assert out["n_genes_per_gene_auroc"] == 0.0


def test_call_metrics_weights_count_a_row_as_that_many_rows() -> None:
    from coreperturb.evaluation._calls import call_metrics

    rng = np.random.default_rng(3)
    n = 400
    y = (rng.uniform(size=n) < 0.3).astype(int)
    calls = rng.choice(np.array(["DE", "not DE", "uncertain", ""]), size=n)
    prior = rng.uniform(size=n)
    w = rng.integers(1, 4, size=n)
    plain = call_metrics(y, calls, prior, "DE")
    assert call_metrics(y, calls, prior, "DE", weights=np.ones(n)) == pytest.approx(plain)
    weighted = call_metrics(y, calls, prior, "DE", weights=w.astype(float))
    rep = np.repeat(
        np.arange(n), w
    )  # each row repeated its weight's times (its deciles differ: not compared)
    edges = call_metrics(y[rep], calls[rep], prior[rep], "DE")
    for key in ("coverage", "uncertain_rate", "coverage_positive_rows"):
        assert weighted[key] == pytest.approx(edges[key])
    assert weighted["n_called"] == plain["n_called"] and weighted["coverage"] != plain["coverage"]
