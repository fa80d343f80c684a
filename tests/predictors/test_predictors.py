from __future__ import annotations

import numpy as np
import pytest

from coreperturb.data import QueryTable
from coreperturb.errors import UnknownNameError
from coreperturb.evaluation._metrics import METRICS
from coreperturb.graph import KnowledgeGraph
from coreperturb.predictors import PREDICTORS, CoreVoting, make_predictor


@pytest.fixture(scope="module")
def fitted(synth_table: QueryTable, synth_kg: KnowledgeGraph):
    sub = synth_table.subset("synth_a", "de")
    train, test = sub.split("train"), sub.split("test")
    models = {
        m: make_predictor(m, synth_kg).fit(train) for m in ("gene_frequency", "knn_retrieval", "core_voting")
    }
    return train, test, models


def _macro(test, s):
    return METRICS.get("macro_per_gene_auroc")(
        test["label"].to_numpy(), s, test["gene"].to_numpy(), test["perturbation"].to_numpy(), 0.5
    )


def test_registry() -> None:
    assert {"gene_frequency", "knn_retrieval", "core_voting"} <= set(PREDICTORS.names())
    with pytest.raises(UnknownNameError, match="unknown predictor 'llm'"):
        PREDICTORS.get("llm")


def test_probabilities_are_valid(fitted) -> None:
    _, test, models = fitted
    for m in models.values():
        p = m.predict_proba(test)
        assert p.shape == (len(test), 2)
        assert np.allclose(p.sum(axis=1), 1) and (p >= 0).all() and (p <= 1).all()
        assert 0 < m.threshold_ < 1


def test_gene_frequency_is_half_per_gene(fitted) -> None:
    _, test, models = fitted
    assert _macro(test, models["gene_frequency"].predict_proba(test)[:, 1]) == 0.5


def test_core_voting_beats_baselines_on_planted_signal(fitted) -> None:
    _, test, models = fitted
    y = test["label"].to_numpy()
    core = models["core_voting"].predict_proba(test)[:, 1]
    gf = models["gene_frequency"].predict_proba(test)[:, 1]
    knn = models["knn_retrieval"].predict_proba(test)[:, 1]
    assert _macro(test, core) > 0.62
    assert _macro(test, core) > _macro(test, knn) + 0.05
    assert METRICS.get("auroc")(y, core, y, y, 0.5) > METRICS.get("auroc")(y, gf, y, y, 0.5)
    # calibrated on train perturbations: mean prediction near the observed rate
    assert abs(core.mean() - y.mean()) < 0.05
    assert models["core_voting"].combiner_ in ("logistic", "boosting")


def test_core_voting_direction_task(synth_table: QueryTable, synth_kg: KnowledgeGraph) -> None:
    sub = synth_table.subset("synth_a", "dir")
    train, test = sub.split("train"), sub.split("test")
    m = CoreVoting(synth_kg, n_folds=3).fit(train)
    assert _macro(test, m.predict_proba(test)[:, 1]) > 0.6


def test_core_voting_accepts_a_scikit_learn_combiner(
    synth_table: QueryTable, synth_kg: KnowledgeGraph
) -> None:
    import json

    from sklearn.linear_model import LogisticRegression

    sub = synth_table.subset("synth_a", "de")
    train, test = sub.split("train"), sub.split("test")
    est = LogisticRegression(C=0.5, max_iter=500)
    m = CoreVoting(synth_kg, n_folds=3, combiner=est).fit(train)
    assert m.model_ is not est and not hasattr(est, "coef_")  # cloned, the user's object is untouched
    assert list(m.cv_results_) == ["LogisticRegression"]
    assert _macro(test, m.predict_proba(test)[:, 1]) > 0.6
    assert "LogisticRegression(C=0.5" in json.loads(json.dumps(m.saved_params()))["combiner"]
    with pytest.raises(ValueError, match="unknown combiner 'forest'"):
        CoreVoting(synth_kg, combiner="forest").fit(train)


def test_evidence_accessor(fitted) -> None:
    _, test, models = fitted
    ev, sims = models["core_voting"].evidence(test.head(50))
    assert ev.weight.shape == (50, len(sims.pool))
