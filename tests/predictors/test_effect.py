"""Answers specific to the perturbation: effect scores, rankings per perturbation / per gene, ranking metrics."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from coreperturb._model_files import load_model
from coreperturb.evaluation._metrics import (
    RANKING_METRICS,
    SPECIFIC_MAX_RATE,
    _bootstrap_ranking,
    bootstrap_draws,
    evaluate,
    ranking_metric,
    topk_hits,
)
from coreperturb.predictors._effect import DEFAULT_EFFECT, EffectParams, effect_score, gene_prior
from coreperturb.stages import GRID_COLUMNS, grid_plan, predict_grid, rank_predictions, top_predictions

# -- effect score ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [EffectParams(f, k) for f in ("plain", "weighted", "pseudo", "ratio") for k in (0, 1, 5)]
)
def test_effect_is_zero_at_the_prior_and_monotone(params: EffectParams) -> None:
    prior = np.array([0.05, 0.3, 0.6])
    n = np.array([4.0, 4.0, 4.0])
    assert np.allclose(effect_score(prior, prior, n, params), 0.0)
    lo, hi = effect_score(prior * 0.8, prior, n, params), effect_score(prior * 1.5, prior, n, params)
    assert (lo < 0).all() and (hi > 0).all()
    assert np.isnan(effect_score(np.array([0.5]), np.array([np.nan]), np.array([3.0]), params)).all()


def test_default_effect_needs_related_evidence() -> None:
    # no related perturbation observed on the gene: no lift, however far p_de is from the prior
    p, prior = np.array([0.9, 0.9, 0.9]), np.array([0.05, 0.05, 0.05])
    e = effect_score(p, prior, np.array([0, 1, 50]), DEFAULT_EFFECT)
    assert e[0] == 0.0 and 0 < e[1] < e[2] < np.log(0.9 / 0.05) + 1e-12
    assert e[1] == pytest.approx(np.log((0.5 * 0.9 + 0.5 * 0.05) / 0.05))


def test_gene_prior_is_the_gene_frequency_score(synth_table, synth_kg) -> None:  # type: ignore[no-untyped-def]
    from coreperturb.predictors._simple import GeneFrequency

    train = synth_table.subset("synth_a", "de").split("train")
    genes = np.array([*pd.unique(train["gene"])[:20], "NOT_A_READOUT"])
    gf = GeneFrequency().fit(train)
    prior = gene_prior(train, genes)
    q = pd.DataFrame({"perturbation": "x", "gene": genes})
    assert np.array_equal(prior[:-1], gf.predict_proba(q)[:-1, 1]) and np.isnan(prior[-1])


# -- ranking metrics against brute force ------------------------------------------------------------


def _expected_topk_bruteforce(key: np.ndarray, hits: np.ndarray, k: int) -> float:
    """Average, over every order of the rows consistent with ``key`` (ties in all orders), of the hits in
    the first k."""
    total, count = 0.0, 0
    for perm in itertools.permutations(range(len(key))):
        order = sorted(perm, key=lambda i: -key[i])  # sorted is stable: ties keep the permutation's order
        total += hits[order[:k]].sum()
        count += 1
    return total / count


@pytest.mark.parametrize("seed", range(5))
def test_topk_hits_breaks_ties_in_expectation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    key = rng.integers(0, 3, 6).astype(float)  # many ties
    hits = rng.integers(0, 2, 6).astype(bool)
    for k in (1, 2, 4, 6):
        got = topk_hits(np.zeros(6, dtype=int), key, hits, k)["hits_at_k"].iloc[0]
        assert got == pytest.approx(_expected_topk_bruteforce(key, hits, k), abs=1e-12)


def _random_predictions(seed: int, n_p: int = 12, n_g: int = 25) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = np.repeat([f"P{i}" for i in range(n_p)], n_g)
    g = np.tile([f"G{j}" for j in range(n_g)], n_p)
    prior = np.tile(rng.uniform(0.01, 0.6, n_g), n_p)
    y = (rng.uniform(size=len(p)) < prior + 0.1).astype(int)
    s = np.clip(prior + rng.normal(0, 0.1, len(p)) + 0.2 * y, 0.001, 0.999)
    eff = np.log(s / prior)
    keep = rng.uniform(size=len(p)) < 0.8  # ragged: not every pair is labelled
    return {"y": y[keep], "s": s[keep], "g": g[keep], "p": p[keep], "prior": prior[keep], "eff": eff[keep]}


@pytest.mark.parametrize("seed", range(3))
def test_ranking_metrics_match_a_bruteforce_computation(seed: int) -> None:
    d = _random_predictions(seed, n_p=40)  # more perturbations than a gene's top 10
    y, s, g, p, prior, eff = d["y"], d["s"], d["g"], d["p"], d["prior"], d["eff"]
    args = (y, s, g, p, prior, eff)
    frame = pd.DataFrame({"y": y, "s": s, "g": g, "p": p, "prior": prior, "eff": eff})
    frame["spec"] = (frame["y"] == 1) & (frame["prior"] < SPECIFIC_MAX_RATE)

    def per_p(key: str, hit: str, k: int) -> float:
        vals = []
        for _, grp in frame.groupby("p"):
            if grp[hit].sum() == 0:
                continue
            top = grp.sort_values(key, ascending=False).head(k)
            vals.append(top[hit].sum() / min(k, len(grp)))
        return float(np.mean(vals))

    for k in (10, 50):
        assert ranking_metric(f"precision_at_{k}", *args) == pytest.approx(per_p("s", "y", k))
        assert ranking_metric(f"specific_precision_at_{k}", *args) == pytest.approx(per_p("eff", "spec", k))
        assert ranking_metric(f"p_de_specific_precision_at_{k}", *args) == pytest.approx(
            per_p("s", "spec", k)
        )
    aps = [
        average_precision_score(grp["y"], grp["s"])
        for _, grp in frame.groupby("p")
        if 0 < grp["y"].sum() < len(grp)
    ]
    assert ranking_metric("macro_per_perturbation_auprc", *args) == pytest.approx(np.mean(aps))
    recalls = [
        grp.sort_values("s", ascending=False).head(10)["y"].sum() / grp["y"].sum()
        for _, grp in frame.groupby("g")
        if grp["y"].sum() > 0
    ]
    assert 0.2 < np.mean(recalls) < 0.9  # not trivially 1
    assert ranking_metric("per_gene_recall_at_10", *args) == pytest.approx(np.mean(recalls))


def test_constant_effect_scores_what_a_random_order_gets() -> None:
    d = _random_predictions(7)
    args = (d["y"], d["s"], d["g"], d["p"], d["prior"], np.zeros_like(d["s"]))
    frame = pd.DataFrame({"p": d["p"], "spec": (d["y"] == 1) & (d["prior"] < SPECIFIC_MAX_RATE)})
    rate = frame.groupby("p")["spec"].agg(["sum", "size"])
    rate = rate[rate["sum"] > 0]
    # precision@k of a random order, in expectation: the share of hits (k <= rows of each perturbation)
    assert ranking_metric("specific_precision_at_10", *args) == pytest.approx(
        (rate["sum"] / rate["size"]).mean()
    )


def test_ranking_bootstrap_equals_the_metric_on_each_resample() -> None:
    d = _random_predictions(3)
    arrays = (d["y"], d["s"], d["g"], d["p"], d["prior"], d["eff"])
    counts, codes = bootstrap_draws(d["p"], 4, seed=1)
    uniq = np.unique(d["p"])
    members = pd.Series(np.arange(len(d["p"]))).groupby(codes).indices
    for name in RANKING_METRICS:
        if RANKING_METRICS.get(name).unit != "perturbation":
            continue
        got = _bootstrap_ranking(name, arrays, counts, uniq, 4, 1)
        for b, c in enumerate(counts):
            drawn = [(k, int(n)) for k, n in enumerate(c) if n]
            idx = np.concatenate([np.tile(members[k], n) for k, n in drawn])
            copy = np.concatenate([np.repeat(np.arange(n), len(members[k])) for k, n in drawn])
            pp = (
                codes[idx].astype(np.int64) * (int(c.max()) + 1) + copy
            )  # each drawn copy its own perturbation
            want = ranking_metric(
                name, d["y"][idx], d["s"][idx], d["g"][idx], pp, d["prior"][idx], d["eff"][idx]
            )
            assert got[b] == pytest.approx(want, nan_ok=True), name
    # per-gene metrics resample genes: each resample is a weighted mean of the per-gene values
    per_gene = RANKING_METRICS.get("per_gene_recall_at_10").fn(*arrays).dropna()
    boot = _bootstrap_ranking("per_gene_recall_at_10", arrays, counts, uniq, 200, 0)
    assert per_gene.min() <= boot.min() and boot.max() <= per_gene.max()
    assert abs(boot.mean() - per_gene.mean()) <= 3 * per_gene.std() / np.sqrt(len(per_gene)) + 1e-12


def test_evaluate_reports_ranking_metrics_with_cis() -> None:
    d = _random_predictions(4)
    out = evaluate(
        d["y"], d["s"], d["g"], d["p"], prior=d["prior"], effect=d["eff"], n_bootstrap=20
    ).set_index("metric")
    for name in ("specific_precision_at_10", "per_gene_recall_at_10", "macro_per_perturbation_auprc"):
        assert out.loc[name, "ci_low"] <= out.loc[name, "value"] <= out.loc[name, "ci_high"]
    assert "specific_precision_at_10" not in set(evaluate(d["y"], d["s"], d["g"], d["p"])["metric"])


# -- prediction columns and rankings on a synthetic model --------------------------------------------


def test_grid_has_effect_columns(model_dir: Path) -> None:
    models = load_model(model_dir)
    plan = grid_plan(models, ["G0001", "G0004"], cell_lines=["synth_a"])
    frames = list(predict_grid(models, plan, methods=["core_voting", "gene_frequency"]))
    cv = next(f for f in frames if f["method"].iloc[0] == "core_voting")
    gf = next(f for f in frames if f["method"].iloc[0] == "gene_frequency")
    assert list(cv.columns) == list(GRID_COLUMNS)
    # p_prior is the gene-frequency score; gene frequency has no perturbation-specific effect (off target:
    # on a perturbation's own target the modality's rule decides)
    off = ~gf["on_target"].to_numpy()
    assert gf["on_target"].sum() == 2 and (gf.loc[gf["on_target"], "gene"].tolist() == ["G0001", "G0004"])
    assert np.allclose(cv["p_prior"], gf["p_de"].where(off, cv["p_prior"])) and np.allclose(
        gf["effect"][off], 0.0
    )
    assert np.allclose(cv["excess"], cv["p_de"] - cv["p_prior"]) and np.allclose(gf["excess"][off], 0.0)
    n = cv["n_pos_evidence"] + cv["n_neg_evidence"]
    assert np.allclose(cv["effect"], effect_score(cv["p_de"], cv["p_prior"], n))
    assert np.allclose(cv["p_de_up"], cv["p_de"] * cv["p_up"]) and np.allclose(
        cv["p_de_up"] + cv["p_de_down"], cv["p_de"]
    )
    assert (cv.loc[n == 0, "effect"] == 0).all()
    assert cv["effect_up"].notna().all() and cv["effect_down"].notna().all()


@pytest.mark.parametrize("rank_by", ["excess", "effect", "p_de", "up", "down"])
def test_top_predictions_per_gene_and_per_perturbation(model_dir: Path, rank_by: str) -> None:
    """The ranking mechanics over chunks (the floor is off here; tests/stages/test_biology.py checks it)."""
    models = load_model(model_dir)
    col = {"excess": "excess", "effect": "effect", "p_de": "p_de", "up": "excess_up", "down": "excess_down"}[
        rank_by
    ]
    full = pd.concat(
        list(predict_grid(models, grid_plan(models, None, cell_lines=["synth_a"]))), ignore_index=True
    )
    # small chunks: a gene's best perturbations come from different chunks
    # up / down: among the rows predicted to go that way
    agree = {"up": full["p_up"] >= 0.5, "down": full["p_up"] < 0.5}.get(
        rank_by, pd.Series(True, index=full.index)
    )
    full["_key"] = full[col].where(agree)
    col = "_key"
    per_gene = top_predictions(
        models,
        top=3,
        rank_by=rank_by,
        per="gene",
        cell_lines=["synth_a"],
        pairs_per_chunk=1000,
        min_excess=None,
    )
    per_gene["_key"] = per_gene.merge(full, on=["perturbation", "gene"], how="left")["_key"].to_numpy()
    listable = (
        full if rank_by not in ("up", "down") else full.dropna(subset=[col])
    )  # the other way: no answer
    want = (
        listable.sort_values(col, ascending=False, kind="stable", na_position="last").groupby("gene").head(3)
    )
    assert len(per_gene) == len(want) >= 2.9 * full["gene"].nunique()
    assert set(zip(per_gene["gene"], per_gene["perturbation"], strict=True)) == set(
        zip(want["gene"], want["perturbation"], strict=True)
    )
    assert (per_gene.groupby("gene")[col].apply(lambda x: x.dropna().is_monotonic_decreasing)).all()
    per_p = top_predictions(
        models, ["G0001", "G0004"], top=5, rank_by=rank_by, cell_lines=["synth_a"], min_excess=None
    )
    assert (per_p.groupby("perturbation").size() == 5).all()
    best = listable[listable["perturbation"].isin(["G0001", "G0004"])]
    best = (
        best.sort_values(col, ascending=False, kind="stable", na_position="last")
        .groupby("perturbation")
        .head(5)
    )
    assert set(zip(per_p["perturbation"], per_p["gene"], strict=True)) == set(
        zip(best["perturbation"], best["gene"], strict=True)
    )


def test_rank_predictions_refuses_unknown_settings(model_dir: Path) -> None:
    from coreperturb.errors import CorePerturbError

    frame = pd.DataFrame({"perturbation": ["a"], "gene": ["g"], "effect": [1.0]})
    with pytest.raises(CorePerturbError, match="rank_by"):
        rank_predictions(frame, 3, rank_by="fold")
    with pytest.raises(CorePerturbError, match="per"):
        rank_predictions(frame, 3, per="cell")
    models = load_model(model_dir)
    with pytest.raises(CorePerturbError, match="none of the 1 genes"):
        top_predictions(models, ["G0001"], genes=["NOPE"])
