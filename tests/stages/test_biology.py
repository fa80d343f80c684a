"""Answers a biologist can act on: the on-target rule, candidates out of reach, the floor of a list, calls
with a guarantee, and excess DE as the measure of specificity."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb._config import FitConfig
from coreperturb._model_files import load_model, save_model
from coreperturb.data import QueryTable
from coreperturb.evaluation._calls import call_metrics
from coreperturb.evaluation._metrics import excess_de_at, ranking_metric
from coreperturb.graph import KnowledgeGraph
from coreperturb.stages import (
    FittedModels,
    Ranking,
    fit,
    grid_plan,
    predict,
    predict_grid,
    rank_predictions,
    readout_priors,
)
from coreperturb.stages._ranking import MIN_EXCESS


@pytest.fixture(scope="module")
def models(synth_table: QueryTable, synth_kg: KnowledgeGraph) -> FittedModels:
    """Fitted without self pairs (like PerturbQA): the modality's rule decides on-target rows."""
    frame = synth_table.frame
    frame = frame[frame["perturbation"] != frame["gene"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # a frame carries no design: the synthetic one's is uniform (random genes whatever their labels)
        return fit(frame, synth_kg, FitConfig(methods=("gene_frequency", "core_voting"), design="uniform"))


def _grid(models: FittedModels, perts: list[str], genes: list[str] | None = None) -> pd.DataFrame:
    plan = grid_plan(models, perts, genes=genes)
    return pd.concat(list(predict_grid(models, plan, methods=["core_voting"])), ignore_index=True)


def _self_pert(models: FittedModels) -> str:
    """A test perturbation that is also a readout gene."""
    test = set(models.readout_genes("synth_a")) - set(models.training_perturbations("synth_a"))
    return sorted(test)[0]


def test_crispri_target_is_de_and_down_on_itself_and_flagged(models: FittedModels) -> None:
    assert models.config.modality == "crispri"
    p = _self_pert(models)
    rows = _grid(models, [p])
    own = rows[rows["gene"] == p].iloc[0]
    assert own["p_de"] == 1.0 and own["p_up"] == 0.0 and bool(own["on_target"])
    assert own["call"] == "DE" and own["call_dir"] == "down" and "on_target" in own["flag"]
    others = rows[rows["gene"] != p]
    assert not others["on_target"].any() and not others["flag"].str.contains("on_target").any()
    # an on-target row is listed whatever the floor
    assert p in set(rank_predictions(rows, 5, min_excess=0.99)["gene"])
    # the pair path (benchmark, --queries) follows the same rule
    q = pd.DataFrame({"perturbation": [p, p], "gene": [p, p], "task": ["de", "dir"]})
    pred = predict(models, q, methods=["core_voting"])
    assert list(pred["score"]) == [1.0, 0.0] and list(pred["call"]) == ["DE", "down"]


def test_the_rule_follows_the_modality_and_the_data(models: FittedModels) -> None:
    p = _self_pert(models)
    crispra = dataclasses.replace(models, config=dataclasses.replace(models.config, modality="crispra"))
    own = _grid(crispra, [p], [p]).iloc[0]
    assert own["p_de"] == 1.0 and own["p_up"] == 1.0 and own["call_dir"] == "up"
    drug = dataclasses.replace(models, config=dataclasses.replace(models.config, modality="drug"))
    own = _grid(drug, [p], [p]).iloc[0]
    assert not own["on_target"] and own["p_de"] < 1.0
    # self pairs in the training rows: their (smoothed) rate decides, not the rule
    train = models.train.copy()
    genes = sorted(set(models.training_perturbations("synth_a")) & set(models.readout_genes("synth_a")))[:6]
    extra = pd.DataFrame(
        {
            "cell_line": "synth_a",
            "task": "de",
            "perturbation": genes,
            "gene": genes,
            "label": [1, 1, 1, 0, 0, 0],
        }
    )
    seen = dataclasses.replace(models, train=pd.concat([train, extra], ignore_index=True))
    own = _grid(seen, [p], [p]).iloc[0]
    assert own["p_de"] == pytest.approx(0.5)
    # a rate that clear of nothing is no call: neither "DE" nor a direction the data do not show
    assert own["call"] == "uncertain" and own["call_dir"] in ("down", "uncertain")


def test_floor_lists_only_confident_responders(models: FittedModels) -> None:
    rows = _grid(
        models,
        sorted(set(models.readout_genes("synth_a")) - set(models.training_perturbations("synth_a")))[:5],
    )
    floored = rank_predictions(rows, 1000)
    assert ((floored["excess"] >= MIN_EXCESS) | floored["on_target"]).all()
    assert len(floored) < len(rank_predictions(rows, 1000, min_excess=None)) == len(rows)
    with pytest.raises(Exception, match="min_excess"):
        Ranking(5, min_excess=2.0)


def test_calls_survive_the_model_file_and_follow_the_confidence(models: FittedModels, tmp_path: Path) -> None:
    perts = sorted(set(models.readout_genes("synth_a")) - set(models.training_perturbations("synth_a")))[:4]
    before = _grid(models, perts)
    loaded = load_model(save_model(models, tmp_path / "m"))
    after = _grid(loaded, perts)
    pd.testing.assert_frame_equal(before, after)
    assert set(before["call"]) <= {"DE", "not DE", "uncertain"} and set(before["call_dir"]) <= {
        "up",
        "down",
        "uncertain",
    }
    loaded.confidence = 0.99
    wider = _grid(loaded, perts)
    assert (wider["call"] == "uncertain").mean() >= (after["call"] == "uncertain").mean()


def test_benchmark_predictions_carry_calls_with_coverage(
    models: FittedModels, synth_table: QueryTable
) -> None:
    test = synth_table.frame.query("split == 'test' and task == 'de'")
    pred = predict(models, test)
    for method, part in pred.groupby("method"):
        m = call_metrics(part["label"].to_numpy(), part["call"].to_numpy(), part["p_prior"].to_numpy(), "DE")
        assert m["coverage"] >= 0.85, method  # 0.9 guaranteed up to sampling noise on a small split
        assert 0 <= m["uncertain_rate"] < 1


def test_excess_de_is_zero_for_gene_level_rankings_and_rewards_the_real_one(
    models: FittedModels, synth_table: QueryTable
) -> None:
    rng = np.random.default_rng(0)
    n_p, n_g = 400, 300
    prior = rng.beta(0.5, 4, n_g)
    y = (rng.uniform(size=(n_p, n_g)) < prior).astype(int).ravel()
    pr = np.tile(prior, n_p)
    perts = np.repeat(np.arange(n_p).astype(str), n_g)
    for key in (pr, -pr, np.where(pr < 0.2, pr, -np.inf), np.zeros_like(pr)):
        assert abs(excess_de_at(y, pr, key, perts, 10)) < 0.02
    # the thresholded metric of earlier releases rewards the prior just below 0.2; excess DE does not
    below = np.where(pr < 0.2, pr, -np.inf)
    genes = np.tile(np.arange(n_g).astype(str), n_p)
    assert ranking_metric("specific_precision_at_10", y, pr, genes, perts, pr, below) > 0.1
    assert excess_de_at(y, pr, y.astype(float), perts, 10) > 0.3  # an oracle lists real responders
    pred = predict(models, synth_table.frame.query("split == 'test' and task == 'de'"))
    cv = pred[pred["method"] == "core_voting"]
    gf = pred[pred["method"] == "gene_frequency"]
    real = excess_de_at(cv["label"], cv["p_prior"], cv["excess"], cv["perturbation"])
    base = excess_de_at(gf["label"], gf["p_prior"], gf["excess"], gf["perturbation"])
    assert real > base + 0.05 and abs(base) < 0.03


def test_readout_priors_cover_every_readout_gene(models: FittedModels) -> None:
    pri = readout_priors(models)
    assert len(pri) == len(models.readout_genes("synth_a"))
    assert pri["p_prior"].is_monotonic_decreasing
