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
    assert "coreperturb.stages" not in loaded and "coreperturb.config" not in loaded


def test_evaluate_and_explain_are_functions_whatever_was_imported_first() -> None:
    import coreperturb
    import coreperturb.evaluation.metrics  # the subpackages that shared the names, imported first
    import coreperturb.explanations
    import coreperturb.stages
    from coreperturb import evaluate, explain

    for f in (evaluate, explain, coreperturb.evaluate, coreperturb.explain):
        assert isinstance(f, types.FunctionType), f
    assert evaluate.__module__ == "coreperturb.evaluation.metrics"
    assert explain.__module__ == "coreperturb.explanations"
