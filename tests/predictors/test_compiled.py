"""The compiled tree scoring equals scikit-learn's predict_proba bit for bit (scikit-learn is the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from coreperturb.predictors import _compiled as compiled
from coreperturb.predictors._compiled import CompiledForest, compiled_forest, engine
from coreperturb.predictors._core_voting import _make_combiner, combiner_proba

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def _compiled_for_every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests compare the compiled kernels with scikit-learn: use them for small inputs too."""
    monkeypatch.setattr(compiled, "SMALL_ROWS", 0)


def test_few_rows_are_scored_by_scikit_learn_without_numba_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(3000, 5)
    model = _make_combiner("boosting", 0, len(x)).fit(x, y)
    monkeypatch.setattr(compiled, "SMALL_ROWS", 2_048)
    monkeypatch.setattr(compiled, "compiled_forest", lambda m: pytest.fail("compiled path for 5 rows"))
    assert np.array_equal(combiner_proba(model, x[:5]), model.predict_proba(x[:5])[:, 1])


def _data(n: int, seed: int, nan: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[:, 3] = rng.integers(0, 4, n)  # few distinct values: thresholds between ties
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 3] + rng.normal(scale=0.8, size=n) > 0).astype(int)
    if nan:
        x[rng.random(x.shape) < nan] = np.nan
    return x, y


@pytest.mark.parametrize(
    "model",
    [
        _make_combiner("boosting", 0, 3000),
        HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=63, min_samples_leaf=5, random_state=1),
        HistGradientBoostingClassifier(max_iter=30, max_depth=2, random_state=2),
    ],
    ids=["default-combiner", "63-leaves", "depth-2"],
)
@pytest.mark.parametrize("threads", [1, 3])
def test_pairs_equal_predict_proba(model: HistGradientBoostingClassifier, threads: int) -> None:
    x, y = _data(3000, 0, nan=0.02)  # NaN in training: splits learn where missing values go
    model.fit(x, y)
    forest = CompiledForest.from_model(model)
    assert forest is not None
    xt, _ = _data(5000, 1)
    raw = forest.raw(xt, threads=threads, block_rows=700)
    assert np.array_equal(raw, model._raw_predict(xt).ravel())
    assert np.array_equal(combiner_proba(model, xt), model.predict_proba(xt)[:, 1])
    # values exactly at split thresholds (x <= threshold goes left) and at +-inf
    nodes = np.concatenate([p[0].nodes for p in model._predictors])
    splits = nodes[nodes["is_leaf"] == 0]
    at = np.tile(xt[:1], (len(splits) + 2, 1))
    at[np.arange(len(splits)), splits["feature_idx"]] = splits["num_threshold"]
    at[-2], at[-1] = np.inf, -np.inf
    assert np.array_equal(forest.raw(at, threads=threads), model._raw_predict(at).ravel())


def test_grid_with_constant_columns_equals_predict_proba() -> None:
    """Per-perturbation and per-gene columns are scored once per perturbation / gene: the same numbers."""
    rng = np.random.default_rng(3)
    n_p, n_g = 37, 53
    per_p = np.repeat(rng.normal(size=(n_p, 2)), n_g, axis=0)
    per_g = np.tile(rng.normal(size=(n_g, 2)), (n_p, 1))
    pair = rng.normal(size=(n_p * n_g, 2))
    x = np.column_stack([per_p[:, 0], pair[:, 0], per_g[:, 0], per_p[:, 1], pair[:, 1], per_g[:, 1]])
    y = (x.sum(axis=1) + rng.normal(size=len(x)) > 0).astype(int)
    model = _make_combiner("boosting", 0, len(x)).fit(x, y)
    forest = CompiledForest.from_model(model)
    assert forest is not None
    want = model.predict_proba(x)[:, 1]
    assert np.array_equal(combiner_proba(model, x, grid=(n_p, n_g)), want)
    raw = forest.raw(np.asfortranarray(x), threads=2, grid=(n_p, n_g), block_rows=400)
    assert np.array_equal(raw, model._raw_predict(x).ravel())
    # a grid shape that does not match the rows is ignored, not trusted
    assert np.array_equal(combiner_proba(model, x, grid=(n_p, n_g + 1)), want)


def test_nan_inputs_and_uncovered_models_fall_back() -> None:
    x, y = _data(2000, 4, nan=0.05)
    model = _make_combiner("boosting", 0, len(x)).fit(x, y)
    xt, _ = _data(500, 5, nan=0.1)
    assert np.array_equal(combiner_proba(model, xt), model.predict_proba(xt)[:, 1])
    big = HistGradientBoostingClassifier(max_iter=3, max_leaf_nodes=100, min_samples_leaf=2).fit(x, y)
    assert CompiledForest.from_model(big) is None  # > 64 leaves a tree: scikit-learn scores it
    assert np.array_equal(combiner_proba(big, xt), big.predict_proba(xt)[:, 1])


def test_engine_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(1000, 6)
    model = _make_combiner("boosting", 0, len(x)).fit(x, y)
    assert engine() == "numba" and compiled_forest(model) is compiled_forest(model)  # built once
    monkeypatch.setenv(compiled.ENGINE_ENV, "sklearn")
    assert engine() == "sklearn" and compiled_forest(model) is None
    assert np.array_equal(combiner_proba(model, x), model.predict_proba(x)[:, 1])


def test_wrong_width_is_refused() -> None:
    x, y = _data(800, 7)
    forest = CompiledForest.from_model(_make_combiner("boosting", 0, len(x)).fit(x, y))
    assert forest is not None
    with pytest.raises(ValueError, match="6 feature columns"):
        forest.raw(x[:, :5])
