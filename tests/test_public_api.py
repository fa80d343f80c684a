"""The public functions' signatures: inputs by position, options by keyword (with a deprecation period)."""

from __future__ import annotations

import inspect
import warnings

import pandas as pd
import pytest

import coreperturb
from coreperturb import api
from coreperturb._deprecation import PositionalArgumentWarning, keyword_options

PUBLIC_FUNCTIONS = sorted(
    {
        name: obj
        for name, obj in [
            *((n, getattr(coreperturb, n)) for n in coreperturb.__all__),
            *((n, getattr(api, n)) for n in api.__all__),
        ]
        if inspect.isfunction(obj)
    }.items()
)


@pytest.mark.parametrize(("name", "func"), PUBLIC_FUNCTIONS, ids=[n for n, _ in PUBLIC_FUNCTIONS])
def test_options_are_keyword_only(name: str, func: object) -> None:
    """A public function of more than three parameters takes its options by keyword: at most four inputs by
    position (``evaluate``'s labels, scores, genes, perturbations), and never a flag."""
    params = list(inspect.signature(func).parameters.values())  # type: ignore[arg-type]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) > 3:
        assert len(positional) < len(params) and len(positional) <= 4, [p.name for p in positional]
    flags = [p.name for p in positional if isinstance(p.default, bool)]
    assert not flags, f"{name}: boolean flags by position {flags}"


def test_an_option_by_position_still_works_with_a_warning() -> None:
    @keyword_options
    def f(a: int, *, b: int = 1, c: int = 2) -> tuple[int, int, int]:
        return a, b, c

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(1, c=5) == (1, 1, 5)
    with pytest.warns(PositionalArgumentWarning, match=r"f\(\): pass b=\.\.\., c=\.\.\. by keyword"):
        assert f(1, 3, 4) == (1, 3, 4)
    with pytest.raises(TypeError, match="multiple values for b"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f(1, 3, b=4)
    with pytest.raises(TypeError, match="4 arguments were given by position"):
        f(1, 2, 3, 4)


def test_a_library_function_keeps_its_answer_when_options_come_by_position() -> None:
    rows = pd.DataFrame(
        {
            "label": [1, 0, 1, 0, 0, 1],
            "score": [0.9, 0.2, 0.7, 0.4, 0.1, 0.6],
            "gene": ["g1", "g1", "g1", "g2", "g2", "g2"],
            "perturbation": ["p1", "p2", "p3", "p1", "p2", "p3"],
        }
    )
    args = (rows.label.to_numpy(), rows.score.to_numpy(), rows.gene.to_numpy(), rows.perturbation.to_numpy())
    want = coreperturb.evaluate(*args, threshold=0.5)
    with pytest.warns(PositionalArgumentWarning, match="threshold"):
        got = coreperturb.evaluate(*args, 0.5)
    pd.testing.assert_frame_equal(got, want)
