"""Estimators as plain arrays: the same probabilities as scikit-learn, bit for bit (scikit-learn is the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize

from coreperturb._util import l2_normalize_rows
from coreperturb.predictors import _compiled as compiled
from coreperturb.predictors._portable import (
    SMALL_EXPIT,
    ForestArrays,
    LinearArrays,
    _expit_small,
    expit,
    from_portable,
    to_portable,
)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 8))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.standard_normal(3000) > 0.7).astype(int)
    x[rng.random(3000) < 0.05, 2] = np.nan  # missing values: the trees learn where NaN goes
    return x, y


def test_forest_arrays_match_predict_proba(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    model = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, random_state=0).fit(x, y)
    kind, arrays = to_portable(model)  # type: ignore[misc]
    again = from_portable(kind, {k: v.copy() for k, v in arrays.arrays().items()})
    rng = np.random.default_rng(1)
    probe = np.vstack([x, rng.standard_normal((500, 8)) * 4])
    probe[::11, 2] = np.nan
    want = model.predict_proba(probe)
    for est in (arrays, again):
        assert isinstance(est, ForestArrays)
        assert np.array_equal(est.predict_proba(probe), want)
    # the compiled layout built from the arrays is the one built from the model
    a, b = compiled.CompiledForest.from_model(model), compiled.CompiledForest.from_model(arrays)
    assert a is not None and b is not None
    for f in ("start", "threshold", "tree", "mask", "leaf_value", "leaf_start"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    # combiner_proba on the arrays, over the compiled kernels (many rows) and NumPy (few): the same numbers
    clean = np.nan_to_num(probe)
    want_clean = model.predict_proba(clean)[:, 1]
    assert np.array_equal(compiled.combiner_proba(arrays, clean), want_clean)
    assert np.array_equal(compiled.combiner_proba(arrays, clean[:5]), want_clean[:5])


@pytest.mark.parametrize("scaled", [False, True])
def test_linear_arrays_match_predict_proba(data: tuple[np.ndarray, np.ndarray], scaled: bool) -> None:
    x, y = data
    x = np.nan_to_num(x)
    model = make_pipeline(StandardScaler(), LogisticRegression()) if scaled else LogisticRegression(C=1e6)
    model.fit(x, y)
    kind, arrays = to_portable(model)  # type: ignore[misc]
    assert isinstance(arrays, LinearArrays) and len(arrays.mean) == (8 if scaled else 0)
    again = from_portable(kind, arrays.arrays())
    for est in (arrays, again):
        assert np.array_equal(est.predict_proba(x), model.predict_proba(x))
    # one column, as the calibrators have
    cal = LogisticRegression(C=1e6).fit(x[:, :1], y)
    assert np.array_equal(to_portable(cal)[1].predict_proba(x[:, :1]), cal.predict_proba(x[:, :1]))  # type: ignore[index]


def test_other_estimators_are_not_portable(data: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = data
    assert to_portable(RandomForestClassifier(n_estimators=2).fit(np.nan_to_num(x), y)) is None
    multi = LogisticRegression().fit(np.nan_to_num(x), y + (x[:, 0] > 1))
    assert to_portable(multi) is None


def test_damaged_arrays_are_refused(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    forest = ForestArrays.from_sklearn(HistGradientBoostingClassifier(max_iter=5).fit(x, y))
    assert forest is not None
    good = forest.arrays()
    for field, change, why in [
        ("left", lambda v: v + 10**6, "outside"),
        ("right", lambda v: np.where(v > 0, 0, v), "back to an earlier node"),
        ("feature", lambda v: v + 100, "feature the model does not have"),
        ("value", lambda v: v[:-1], "different lengths"),
    ]:
        bad = dict(good, **{field: change(good[field])})
        with pytest.raises(ValueError, match=why):
            ForestArrays.from_arrays(bad)
    with pytest.raises(ValueError, match="unknown estimator kind"):
        from_portable("pickle", good)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_l2_normalize_rows_is_scikit_learns(dtype: type) -> None:
    rng = np.random.default_rng(2)
    x = sp.random(200, 300, density=0.05, format="csr", random_state=3)
    x.data = rng.standard_normal(x.nnz) * rng.exponential(5, x.nnz)
    if dtype is np.int64:
        x.data = np.round(x.data)
    x = x.astype(dtype)
    x = sp.csr_matrix(x.toarray() * (np.arange(200) % 7 != 0)[:, None])  # some empty rows
    want = normalize(x, norm="l2", axis=1)
    got = l2_normalize_rows(x)
    assert got.dtype == want.dtype
    assert np.array_equal(got.toarray(), want.toarray())
    assert np.array_equal(l2_normalize_rows(x, copy=False).toarray(), want.toarray())


def test_small_inputs_map_bit_for_bit_as_scipy_expit() -> None:
    """Few values skip importing scipy.special (math.exp): the same bits, edges included."""
    from scipy.special import expit as scipy_expit

    rng = np.random.default_rng(3)
    edges = [0.0, -0.0, 1e-300, -1e-300, 36.7, -36.7, 709.78, -709.78, 709.79, -709.79, 745.2, -745.2]
    x = np.concatenate(
        [rng.normal(0, 3, 100_000), rng.uniform(-800, 800, 20_000), edges, [np.inf, -np.inf, np.nan]]
    )
    got, want = _expit_small(x), scipy_expit(x)
    assert np.array_equal(got, want, equal_nan=True)
    few = x[:SMALL_EXPIT].reshape(8, -1)
    assert np.array_equal(expit(few), scipy_expit(few)) and expit(few).shape == few.shape
    assert expit(x[: SMALL_EXPIT + 1]).dtype == np.float64


def test_a_few_rows_score_as_predict_proba(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y)
    _, portable = to_portable(model)  # type: ignore[misc]
    for n in (1, 3, SMALL_EXPIT // 2):
        assert np.array_equal(portable.predict_proba(x[:n]), model.predict_proba(x[:n]))
