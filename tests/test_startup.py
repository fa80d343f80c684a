"""What a command pays before it starts, and names that mean one thing whatever was imported before."""

from __future__ import annotations

import subprocess
import sys
import types


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_the_command_line_loads_no_library_to_show_its_help() -> None:
    loaded = _modules_after("import coreperturb.cli\nfrom coreperturb.cli import app")
    heavy = {"numpy", "pandas", "scipy", "sklearn", "numba", "pyarrow", "pydantic", "rich.console"}
    assert not heavy & loaded, f"`coreperturb --help` imports {sorted(heavy & loaded)}"
    assert "coreperturb.stages" not in loaded and "coreperturb._config" not in loaded


def test_evaluate_and_explain_are_functions_whatever_was_imported_first() -> None:
    import coreperturb
    import coreperturb._explanations  # noqa: F401
    import coreperturb.evaluation._metrics  # noqa: F401 (the subpackages that shared the names, imported first)
    import coreperturb.stages  # noqa: F401
    from coreperturb import evaluate, explain

    for f in (evaluate, explain, coreperturb.evaluate, coreperturb.explain):
        assert isinstance(f, types.FunctionType), f
    assert evaluate.__module__ == "coreperturb.evaluation._metrics"
    assert explain.__module__ == "coreperturb._explanations"


def test_predicting_from_a_saved_model_loads_neither_scikit_learn_nor_the_llm_layer(
    model_dir: object,
) -> None:
    """A saved model's estimators are plain arrays: a prediction pays no scikit-learn / skops import (about
    1.9 s), and a model of non-LLM methods does not load the LLM layer."""
    loaded = _modules_after(
        "from coreperturb._api import predict_to_file\n"
        "import tempfile, pathlib\n"
        "out = pathlib.Path(tempfile.mkdtemp()) / 'p.csv'\n"
        f"predict_to_file({str(model_dir)!r}, out, perturbations=['G0001'], genes=['G0002'])\n"
        "assert out.is_file()"
    )
    heavy = {"sklearn", "skops", "coreperturb.llm", "coreperturb.predictors._llm"}
    assert not heavy & loaded, f"a one-pair prediction imports {sorted(heavy & loaded)}"


def test_lazily_registered_predictors_load_on_first_use() -> None:
    loaded = _modules_after(
        "from coreperturb.predictors import PREDICTORS\n"
        "assert 'core_reasoning' in PREDICTORS and 'core_reasoning' in PREDICTORS.names()\n"
        "assert PREDICTORS.get('core_voting').__name__ == 'CoreVoting'"
    )
    assert "coreperturb.predictors._core_voting" in loaded and "coreperturb.predictors._llm" not in loaded
    from coreperturb.errors import UnknownNameError
    from coreperturb.predictors import PREDICTORS

    try:
        PREDICTORS.get("nope")
    except UnknownNameError as exc:
        assert "core_reasoning" in str(exc) and "core_voting" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("an unknown predictor was accepted")
