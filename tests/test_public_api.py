"""The public API: its size, private modules behind it, and its signatures (inputs by position, options by
keyword, with a deprecation period)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings

import pandas as pd
import pytest

import coreperturb
from coreperturb._deprecation import PositionalArgumentWarning, keyword_options

PUBLIC_PACKAGES = (
    "data",
    "graph",
    "evidence",
    "llm",
    "predictors",
    "evaluation",
    "stages",
    "report",
    "serve",
)
"""The subpackages whose ``__all__`` is public API, beside ``coreperturb`` itself and ``coreperturb.errors``."""

MAX_PUBLIC_NAMES = 130
"""A ceiling, so that a new public name is a decision: 445 names were public before the modules went private."""


def _public_names() -> dict[str, object]:
    names = {n: getattr(coreperturb, n) for n in coreperturb.__all__}
    for pkg in PUBLIC_PACKAGES:
        module = importlib.import_module(f"coreperturb.{pkg}")
        names |= {f"{pkg}.{n}": getattr(module, n) for n in module.__all__}
    return names


PUBLIC_FUNCTIONS = sorted((n, obj) for n, obj in _public_names().items() if inspect.isfunction(obj))


def test_the_public_api_is_small() -> None:
    """Every public name is importable, and there are few of them."""
    names = _public_names()
    assert len(names) <= MAX_PUBLIC_NAMES, len(names)
    assert {"fit", "predict", "evaluate", "explain", "stages.predict_grid", "predictors.CoreVoting"} <= set(
        names
    )


def test_every_module_behind_the_api_is_private() -> None:
    """Outside the public packages' ``__init__``, ``coreperturb.errors`` and the command line, a module's name
    starts with an underscore."""
    public = [
        m.name
        for m in pkgutil.walk_packages(coreperturb.__path__, "coreperturb.")
        if not any(part.startswith("_") for part in m.name.split("."))
    ]
    allowed = {f"coreperturb.{p}" for p in (*PUBLIC_PACKAGES, "errors", "cli")}
    assert [m for m in public if m not in allowed and not m.startswith("coreperturb.cli.")] == []


def test_an_old_module_path_still_imports_with_a_warning() -> None:
    """``coreperturb.config`` (public before) gives the private module itself, with a DeprecationWarning."""
    import coreperturb._config as private

    with pytest.warns(DeprecationWarning, match=r"coreperturb\.stages\.grids is private now"):
        from coreperturb.stages.grids import predict_grid
    assert predict_grid is coreperturb.stages.predict_grid
    with pytest.warns(DeprecationWarning, match="import its public names from coreperturb"):
        old = importlib.import_module("coreperturb.config")
    assert old is private and old.__spec__ is not None and old.__spec__.name == "coreperturb._config"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("coreperturb.no_such_module")


@pytest.mark.parametrize(("name", "func"), PUBLIC_FUNCTIONS, ids=[n for n, _ in PUBLIC_FUNCTIONS])
def test_options_are_keyword_only(name: str, func: object) -> None:
    """A public function of more than three parameters takes its options by keyword only: at most four inputs
    by position (``evaluate``'s labels, scores, genes, perturbations), more only where all are required
    (``relation_from_pairs``), and never a flag."""
    params = list(inspect.signature(func).parameters.values())  # type: ignore[arg-type]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) > 3:
        assert len(positional) < len(params), f"{name}: no keyword-only options"
        assert len(positional) <= 4 or all(p.default is p.empty for p in positional), [
            p.name for p in positional
        ]
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


def test_a_renamed_option_still_works_with_a_warning(synth_table: object, synth_kg: object) -> None:
    """``progress=`` (a message callback) is ``on_step=`` now; the old name works until 0.3, with a warning."""
    from coreperturb.stages import FitConfig

    said: list[str] = []
    config = FitConfig(methods=("gene_frequency",))
    with pytest.warns(FutureWarning, match=r"progress= is now on_step="):
        coreperturb.fit(synth_table, synth_kg, config, progress=said.append)
    assert said and said == [m for m in said if isinstance(m, str)]
    with pytest.raises(TypeError, match="both progress= and its new name on_step="):
        coreperturb.fit(synth_table, synth_kg, config, progress=said.append, on_step=said.append)
    assert "on_step" in inspect.signature(coreperturb.fit).parameters
