"""The genome scale: a case-control sample's probabilities mapped back to the genome, and calls whose
guarantee holds there (simulated designs with a known truth)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coreperturb.data._design import (
    SamplingDesign,
    asking_factors,
    perturbation_design,
    resolve_design,
    row_weights,
)
from coreperturb.evaluation._genome import genome_metrics
from coreperturb.predictors._conformal import MondrianConformal
from coreperturb.predictors._scale import ScaleMap
from tests.conftest import SHARED


def _genome(n_p: int = 300, n_g: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A genome of pairs with a known P(DE) (about 1% DE) and its labels."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-5.5, 1.5, size=n_p * n_g)
    p_true = 1 / (1 + np.exp(-z))
    y = (rng.uniform(size=len(z)) < p_true).astype(int)
    perts = np.repeat(np.array([f"P{i}" for i in range(n_p)], dtype=object), n_g)
    return p_true, y, perts


def _case_control(y: np.ndarray, perts: np.ndarray, n_not: int, seed: int = 1) -> np.ndarray:
    """Rows of a case-control table: every DE pair, ``n_not`` random not-DE pairs per perturbation."""
    rng = np.random.default_rng(seed)
    keep = y == 1
    for p in pd.unique(perts):
        idx = np.flatnonzero((perts == p) & (y == 0))
        keep[rng.choice(idx, size=min(n_not, len(idx)), replace=False)] = True
    return np.flatnonzero(keep)


def test_scale_map_takes_a_case_control_table_back_to_the_genome() -> None:
    p_true, y, perts = _genome()
    rows = _case_control(y, perts, 40)
    frame = pd.DataFrame({"perturbation": perts[rows], "gene": "g", "label": y[rows]})
    design = perturbation_design(frame, 1000, SamplingDesign("case_control"))
    # a model calibrated on the sample: P_sample = odds(p_true) / s (s = 40 / ~990)
    s = design["not_de_share"].median()
    odds = p_true[rows] / (1 - p_true[rows]) / s
    p_sample = odds / (1 + odds)
    assert y[rows].mean() > 10 * y.mean()  # the table is enriched in DE pairs
    w = row_weights(frame["perturbation"].to_numpy(), frame["label"].to_numpy(), design)
    scale = ScaleMap.fit(p_sample, frame["label"].to_numpy(), w, share=float(s))
    assert 0.8 < scale.b < 1.2 and abs(scale.a - np.log(s)) < 0.3
    genome = scale(p_sample)
    # over the genome: Σ P(DE) per perturbation matches its DE genes (weighted by the design)
    out = genome_metrics(
        frame["label"], genome, frame["perturbation"], design=SamplingDesign("case_control"), universe=1000
    )
    assert 0.85 < out["genome_de_ratio"] < 1.15
    # the unmapped sample probabilities overstate it many times
    raw = genome_metrics(
        frame["label"], p_sample, frame["perturbation"], design=SamplingDesign("case_control"), universe=1000
    )
    assert raw["genome_de_ratio"] > 10
    # increasing: no ranking changes
    order = np.argsort(p_sample, kind="stable")
    assert np.all(np.diff(genome[order]) >= 0)
    assert np.isnan(scale(np.array([np.nan]))[0]) and scale(np.array([1.0]))[0] == 1.0


def test_weighted_conformal_covers_the_genome() -> None:
    p_true, y, perts = _genome(n_p=400, n_g=500, seed=3)
    rows = _case_control(y, perts, 30, seed=4)
    frame = pd.DataFrame({"perturbation": perts[rows], "gene": "g", "label": y[rows]})
    design = perturbation_design(frame, 500, SamplingDesign("case_control"))
    w = row_weights(frame["perturbation"].to_numpy(), frame["label"].to_numpy(), design)
    cal = np.isin(frame["perturbation"], [f"P{i}" for i in range(200)])
    prior = np.full(len(frame), 0.01)
    genes = np.array(["g"] * len(frame))
    conf = MondrianConformal.fit(p_true[rows][cal], y[rows][cal], prior[cal], genes[cal], weights=w[cal])
    # test on whole genome rows of the other perturbations
    test = ~np.isin(perts, [f"P{i}" for i in range(200)])
    calls = conf.calls(p_true[test], np.full(test.sum(), 0.01), np.array(["g"] * test.sum()), "de", 0.9)
    covered = (calls == "uncertain") | ((calls == "DE") == (y[test] == 1))
    assert covered.mean() >= 0.89
    de = calls == "DE"
    assert not de.any() or (y[test][de] == 1).mean() > 0.5


def test_resolve_design_prefers_what_was_stated_then_recorded_then_the_table() -> None:
    rows = pd.DataFrame(
        {
            "cell_line": "a",
            "task": "de",
            "perturbation": np.repeat(["P1", "P2"], 10),
            "gene": np.tile([f"G{i}" for i in range(10)], 2),
            "label": 0,
        }
    )
    assert resolve_design("auto", rows).kind == "complete"  # every gene asked
    assert resolve_design("auto", rows.iloc[::3]).kind == "case_control"
    hint = SamplingDesign("uniform", None, "recorded")
    assert resolve_design("auto", rows.iloc[::3], hint=hint) == hint
    stated = resolve_design("case_control", rows, hint=hint, lists_cut_from=13)
    assert (stated.kind, stated.lists_cut_from, stated.source) == ("case_control", 13, "stated")


def _lists(lengths: np.ndarray) -> pd.DataFrame:
    """DE rows of perturbations with the given DE list lengths, 20 asked not-DE genes each."""
    rows = [(f"P{i}", f"G{j}", int(j < n)) for i, n in enumerate(lengths) for j in range(int(n) + 20)]
    return pd.DataFrame(rows, columns=["perturbation", "gene", "label"]).assign(cell_line="a", task="de")


def test_lists_piled_up_under_a_cap_are_estimated_cut_and_long_tailed_ones_whole() -> None:
    from coreperturb.data._design import cut_note, estimate_cut

    rng = np.random.default_rng(0)
    natural = np.maximum(
        rng.geometric(1 / 15, size=400), 1
    )  # long-tailed, as a screen that lists every DE gene
    capped = np.minimum(natural, rng.integers(13, 21, size=400))  # kept at most 13-20 of them, as PerturbQA
    assert estimate_cut(_lists(natural))[0] is None
    cut, share, longest = estimate_cut(_lists(capped))
    assert longest == 20 and cut == 13 and share >= 0.4
    design = resolve_design("auto", _lists(capped))
    assert (design.kind, design.lists_cut_from, design.source) == ("case_control", 13, "estimated")
    assert "the DE lists look cut" in str(cut_note(_lists(capped), design))
    assert resolve_design("auto", _lists(natural)).lists_cut_from is None
    stated = resolve_design("case_control", _lists(capped))
    assert stated.lists_cut_from is None  # stated: taken as said, with a note that the lists look cut
    assert "the stated case_control design takes every list as whole" in str(cut_note(_lists(capped), stated))
    assert cut_note(_lists(natural), resolve_design("case_control", _lists(natural))) is None
    assert resolve_design("auto", _lists(capped), lists_cut_from=17).lists_cut_from == 17
    assert estimate_cut(_lists(np.full(50, 8)))[0] is None  # short lists: a cap cannot be told apart


@pytest.mark.skipif(not (SHARED / "perturbqa").is_dir(), reason=f"PerturbQA data not found under {SHARED}")
def test_a_perturbqa_file_read_as_an_own_table_is_estimated_cut_at_13() -> None:
    from coreperturb.data import read_query_table

    for line in ("k562", "rpe1"):
        table = read_query_table(SHARED / "perturbqa" / f"{line}-de.csv", for_fit=True)
        design = resolve_design("auto", table.frame)
        assert (design.kind, design.lists_cut_from) == ("case_control", 13), line


def test_cut_lists_carry_no_weight() -> None:
    frame = pd.DataFrame(
        {
            "perturbation": ["long"] * 20 + ["short"] * 12,
            "gene": [f"G{i}" for i in range(32)],
            "label": [1] * 15 + [0] * 5 + [1] * 2 + [0] * 10,
        }
    )
    design = perturbation_design(frame, 100, SamplingDesign("case_control", 13))
    assert not design.loc["long", "whole"] and design.loc["short", "whole"]
    w = row_weights(frame["perturbation"].to_numpy(), frame["label"].to_numpy(), design)
    assert (w[:20] == 0).all()
    assert w[20] == 1.0 and np.isclose(w[-1], (100 - 2) / 10)


def test_de_calls_at_the_confidence_are_right_that_often_over_the_genome() -> None:
    # a genome with a few strong responders (about 0.3% of pairs) among rare DE pairs
    rng = np.random.default_rng(7)
    n_p, n_g = 300, 500
    z = np.where(
        rng.uniform(size=n_p * n_g) < 0.003, rng.normal(4.0, 1.5, n_p * n_g), rng.normal(-6, 1.5, n_p * n_g)
    )
    p_true = 1 / (1 + np.exp(-z))
    y = (rng.uniform(size=len(z)) < p_true).astype(int)
    perts = np.repeat(np.array([f"P{i}" for i in range(n_p)], dtype=object), n_g)
    rows = _case_control(y, perts, 20, seed=8)
    frame = pd.DataFrame({"perturbation": perts[rows], "gene": "g", "label": y[rows]})
    w = row_weights(
        frame["perturbation"].to_numpy(),
        frame["label"].to_numpy(),
        perturbation_design(frame, n_g, SamplingDesign("case_control")),
    )
    cal = np.isin(frame["perturbation"], [f"P{i}" for i in range(150)])
    conf = MondrianConformal.fit(
        p_true[rows][cal], y[rows][cal], np.full(cal.sum(), 0.01), np.array(["g"] * cal.sum()), weights=w[cal]
    )
    test = ~np.isin(perts, [f"P{i}" for i in range(150)])
    prior, genes = np.full(test.sum(), 0.01), np.array(["g"] * test.sum())
    calls = conf.calls(p_true[test], prior, genes, "de", 0.9)
    pos, neg = conf.sets(p_true[test], prior, genes, 0.9)
    de = calls == "DE"
    assert (pos & ~neg).sum() < 0.75 * de.sum()  # the coverage sets alone name the rare label less often
    assert de.sum() > 100 and (y[test][de] == 1).mean() >= 0.88  # right at least 90% of the time, up to noise
    covered = (calls == "uncertain") | (de == (y[test] == 1))
    assert covered.mean() >= 0.89
    # the direction task keeps its sets: no call from the probability alone (the same rank as these sets)
    empty = ~pos & ~neg & (p_true[test] >= 0.9)
    dir_calls = conf.calls(p_true[test][empty], prior[empty], genes[empty], "dir", 0.9, delta=None)
    assert empty.any() and set(dir_calls) == {"uncertain"}


def test_asking_factors_undo_a_table_that_asks_frequent_responders_less() -> None:
    """A table asking its frequent responders as not-DE genes half as often as the rest: the weights that
    carry each gene's asking factor estimate genome sums again; ``1 / s_p`` alone reads them low."""
    rng = np.random.default_rng(7)
    n_p, n_g = 300, 1000
    rate = np.where(np.arange(n_g) >= 900, 0.25, 0.004)  # the last 100 genes respond often
    p_true = np.tile(rate, n_p)
    y = (rng.uniform(size=n_p * n_g) < p_true).astype(int)
    perts = np.repeat(np.array([f"P{i}" for i in range(n_p)], dtype=object), n_g)
    genes = np.tile(np.array([f"G{i}" for i in range(n_g)], dtype=object), n_p)
    ask = np.tile(np.where(rate > 0.1, 0.5, 1.0), n_p) * 0.08
    keep = (y == 1) | (rng.uniform(size=len(y)) < ask)
    frame = pd.DataFrame({"perturbation": perts[keep], "gene": genes[keep], "label": y[keep]})
    # binned by DE listings per perturbation (the asked rows' DE share depends on the asks themselves)
    gene_rate = frame.groupby("gene")["label"].sum() / n_p
    factor = asking_factors(frame, gene_rate, pd.Index(pd.unique(frame["perturbation"])))
    assert factor.loc[[f"G{i}" for i in range(900, 1000)]].between(0.4, 0.65).all()
    assert factor.loc[[f"G{i}" for i in range(0, 800)]].between(0.9, 1.2).all()
    design = SamplingDesign("case_control")
    args = (frame["label"].to_numpy(), p_true[keep], frame["perturbation"].to_numpy())
    plain = genome_metrics(*args, design=design, universe=n_g, prior=p_true[keep])
    every_gene = pd.Series(rate, index=[f"G{i}" for i in range(n_g)])  # the readout genes' priors
    fixed = genome_metrics(
        *args,
        design=design,
        universe=n_g,
        prior=p_true[keep],
        genes=frame["gene"].to_numpy(),
        gene_priors=every_gene,
    )
    exact = p_true.sum() / y.sum()
    assert abs(fixed["genome_de_ratio"] / exact - 1) < 0.06
    assert plain["genome_de_ratio"] / exact < 0.85
    # the training side: row weights with the factor are the evaluation's weights
    per = perturbation_design(frame, n_g, design)
    w = row_weights(
        frame["perturbation"].to_numpy(),
        frame["label"].to_numpy(),
        per,
        gene_factor=factor.reindex(frame["gene"]).to_numpy(),
    )
    assert abs((w * p_true[keep]).sum() / (w * frame["label"]).sum() / exact - 1) < 0.06


def test_asking_factors_are_one_without_what_they_need() -> None:
    frame = pd.DataFrame({"perturbation": ["A", "A", "B"], "gene": ["x", "y", "x"], "label": [1, 0, 0]})
    rate = pd.Series({"x": 0.5, "y": np.nan})
    assert (asking_factors(frame, rate, pd.Index([])) == 1.0).all()  # no whole-list perturbation
    # one gene with a rate: a single bin, the mean gene itself
    assert (asking_factors(frame, rate, pd.Index(["A", "B"])) == 1.0).all()


def test_asking_factors_of_a_uniform_draw_stay_near_one() -> None:
    """Not-DE genes drawn uniformly (as ``prepare`` draws them) from a small table: the raw per-bin rates
    scatter with the few asks, the shrunk factors stay near 1."""
    rng = np.random.default_rng(3)
    n_p, n_g = 40, 800
    rate = pd.Series(rng.beta(0.5, 20, size=n_g), index=[f"G{i}" for i in range(n_g)])
    parts = []
    for i in range(n_p):
        de = rate.index[rng.uniform(size=n_g) < rate.to_numpy()]
        rest = rate.index.difference(de)
        asked = rng.choice(rest, size=20, replace=False)
        parts.append(
            pd.DataFrame({"perturbation": f"P{i}", "gene": [*de, *asked], "label": [1] * len(de) + [0] * 20})
        )
    frame = pd.concat(parts, ignore_index=True)
    whole = pd.Index(frame["perturbation"].unique())
    raw = asking_factors(frame, rate, whole, prior_asks=0.0)
    shrunk = asking_factors(frame, rate, whole)
    assert (shrunk - 1).abs().max() < (raw - 1).abs().max()
    assert shrunk.between(0.75, 1.25).all()


def test_genome_weights_per_design() -> None:
    """Per row: 1 for a DE row; ``(U - n_de) / n_not_de`` for an asked not-DE row under a case-control design
    (0 where the list may be cut); ``U / n_asked`` under a uniform one; 1 where the table is complete."""
    from coreperturb.evaluation._genome import genome_weights

    labels = np.array([1, 1, 0, 0, 0] + [1] * 3 + [0])
    perts = np.array(["A"] * 5 + ["B"] * 4)
    w, whole = genome_weights(labels, perts, SamplingDesign("case_control", 3), 100)
    np.testing.assert_allclose(w, [1, 1, 98 / 3, 98 / 3, 98 / 3, 0, 0, 0, 0])
    assert whole.tolist() == [True] * 5 + [False] * 4
    w, whole = genome_weights(labels, perts, SamplingDesign("uniform"), 100)
    np.testing.assert_allclose(w, [20] * 5 + [25] * 4)
    assert whole.all()
    w, _ = genome_weights(labels, perts, SamplingDesign("complete"), 100)
    assert (w == 1).all()
