"""Contract tests over every registered predictor: the one protocol the stages, model files, explain and the
explorer rely on (in the spirit of scikit-learn's ``check_estimator``)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest

from coreperturb.data import QueryTable
from coreperturb.errors import DataValidationError
from coreperturb.graph import KnowledgeGraph
from coreperturb.llm import LLMSettings
from coreperturb.predictors import PREDICTORS, Predictor, make_predictor


def _params(name: str) -> dict[str, Any]:
    cls = PREDICTORS.get(name)
    if getattr(cls, "uses_llm", False):
        return {"llm": LLMSettings(backend="scripted"), "calibration_queries": 40}
    if name.startswith("core_voting"):
        return {"n_folds": 3}
    return {}


@pytest.fixture(scope="module")
def unit(synth_table: QueryTable) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    sub = synth_table.subset("synth_a", "de")
    train = sub.split("train").reset_index(drop=True)
    test = sub.split("test").reset_index(drop=True)
    genes = sorted(pd.unique(test["gene"]))[:15]
    queries = test[test["gene"].isin(genes)].head(60).reset_index(drop=True)
    context = train.assign(cell_line="synth_other").sample(frac=0.5, random_state=0).reset_index(drop=True)
    return train, queries, context


@pytest.mark.parametrize("name", PREDICTORS.names())
def test_predictor_contract(
    name: str, synth_kg: KnowledgeGraph, unit: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    train, queries, context = unit
    model = make_predictor(name, synth_kg, **_params(name))
    assert isinstance(model, Predictor) and model.name == name
    ctx = context if model.uses_context else None
    assert model.fit(train, context=ctx) is model  # fit returns self

    scored = model.score(queries)
    assert list(scored.index) == list(range(len(queries))) and "score" in scored.columns
    p = scored["score"].to_numpy(dtype=np.float64)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    proba = model.predict_proba(queries)
    assert proba.shape == (len(queries), 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(proba[:, 1], p)
    assert 0.0 <= float(model.threshold_) <= 1.0
    if model.shows_evidence:
        assert {"n_pos_evidence", "n_neg_evidence"} <= set(scored.columns)

    # a saved state gives identical scores
    state = model.fitted_state()
    again = type(model).from_fitted_state(synth_kg, state, train, ctx)
    assert np.array_equal(again.score(queries)["score"].to_numpy(dtype=np.float64), p)

    # the grid path scores the same pairs as the pair path
    perts = list(pd.unique(queries["perturbation"]))[:2]
    genes = list(pd.unique(queries["gene"]))[:3]
    grid = model.score_grid(perts, genes, "de")["score"].to_numpy(dtype=np.float64)
    pairs = pd.DataFrame({"perturbation": np.repeat(perts, len(genes)), "gene": np.tile(genes, len(perts))})
    assert np.allclose(grid, model.score(pairs.assign(task="de"))["score"].to_numpy(dtype=np.float64))

    # parameters read back and set
    params = model.get_params()
    assert isinstance(params, dict) and params["kg"] is synth_kg
    with pytest.raises(ValueError, match="no parameter"):
        model.set_params(not_a_parameter=1)
    assert json.loads(json.dumps(model.saved_params())) == model.saved_params()
    stats = model.run_stats()
    assert (stats is not None) == model.uses_llm


@pytest.mark.parametrize("name", PREDICTORS.names())
def test_predictor_clones_and_round_trips_its_parameters(name: str, synth_kg: KnowledgeGraph) -> None:
    from sklearn.base import clone

    model = make_predictor(name, synth_kg, **_params(name))
    params = model.get_params(deep=False)
    assert list(params) == type(model)._param_names() and "kg" in params
    # clone rebuilds from get_params and checks that the constructor stored every argument as given
    twin = clone(model)
    assert type(twin) is type(model) and twin is not model
    assert twin.kg is synth_kg  # the KG is shared, not copied
    assert {k: repr(v) for k, v in twin.get_params().items()} == {
        k: repr(v) for k, v in model.get_params().items()
    }
    # get_params -> set_params -> get_params is the identity
    again = make_predictor(name, synth_kg).set_params(**model.get_params(deep=False))
    assert all(again.get_params(deep=False)[k] is v for k, v in params.items())
    # no work in __init__: nothing but the parameters is set, and a pickle round trip keeps them
    assert set(vars(make_predictor(name, synth_kg, **_params(name)))) == set(params)
    assert pickle.loads(pickle.dumps(model)).get_params(deep=False).keys() == params.keys()


def test_clone_reaches_a_custom_combiner_s_parameters(synth_kg: KnowledgeGraph) -> None:
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression

    model = make_predictor("core_voting", synth_kg, combiner=LogisticRegression(C=0.5))
    assert model.get_params()["combiner__C"] == 0.5
    model.set_params(combiner__C=2.0)
    twin = clone(model)
    assert twin.combiner is not model.combiner and twin.combiner.C == 2.0


@pytest.mark.parametrize("name", PREDICTORS.names())
def test_fit_names_what_is_wrong_with_its_rows(
    name: str, synth_kg: KnowledgeGraph, unit: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    train, _, context = unit
    model = make_predictor(name, synth_kg, **_params(name))
    ctx = context if model.uses_context else None
    with pytest.raises(DataValidationError, match="no column 'label'"):
        model.fit(train.drop(columns="label"), context=ctx)
    bad = train.copy()
    bad["label"] = bad["label"].astype(object)
    bad.loc[3, "label"] = "yes"
    with pytest.raises(DataValidationError, match="row 3 has label 'yes'"):
        model.fit(bad, context=ctx)
    with pytest.raises(DataValidationError, match="no training rows"):
        model.fit(train.iloc[:0], context=ctx)


def test_an_llm_method_s_private_store_goes_with_it(
    synth_kg: KnowledgeGraph, unit: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
) -> None:
    import gc

    train, _, _ = unit
    model = make_predictor("core_reasoning", synth_kg, **_params("core_reasoning"))
    assert not hasattr(model, "private_store_")  # nothing is made before the first call
    model.fit(train)
    folder = model.private_store_.parent
    assert folder.is_dir() and folder.name.startswith("coreperturb-llm-")
    del model
    gc.collect()
    assert not folder.exists()
    with pytest.raises(ValueError, match="reasoning_tokens must be >= 0"):
        make_predictor("llm_isolated", synth_kg, reasoning_tokens=-1, **_params("llm_isolated")).fit(train)
