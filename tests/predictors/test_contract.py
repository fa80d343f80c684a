"""Contract tests over every registered predictor: the one protocol the stages, model files, explain and the
explorer rely on (in the spirit of scikit-learn's ``check_estimator``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from coreperturb.data import QueryTable
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
    assert isinstance(params, dict)
    with pytest.raises(ValueError, match="no parameter"):
        model.set_params(not_a_parameter=1)
    stats = model.run_stats()
    assert (stats is not None) == model.uses_llm
