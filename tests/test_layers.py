"""The house rules of the source tree: no private names imported across packages, commands stay small."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "coreperturb"


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_private_names_cross_packages() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        here = _package(".".join(rel.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coreperturb."):
                if _package(node.module) == here:
                    continue
                offenders += [
                    f"{rel}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not offenders, offenders


def test_cli_command_modules_are_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (SRC / "cli").glob("[!_]*.py")}
    assert sizes and max(sizes.values()) <= 150, sizes


def test_no_source_file_over_500_lines_without_a_reason() -> None:
    long = [
        p.relative_to(SRC)
        for p in SRC.rglob("*.py")
        if len(p.read_text().splitlines()) > 500 and "over 500 lines" not in p.read_text()[:3000]
    ]
    assert not long, long


def test_no_cli_runner_outside_tests_cli() -> None:
    """The library is tested at the library; only tests/cli drives the command line."""
    tests = SRC.parents[1] / "tests"
    outside = [p for p in tests.rglob("*.py") if "cli" not in p.relative_to(tests).parts[:1]]
    assert not [p for p in outside if "CliRunner" in p.read_text() and p.name != "test_layers.py"]


def test_public_functions_take_at_most_four_positional_parameters() -> None:
    import importlib
    import inspect

    offenders = []
    for name in ("coreperturb", "coreperturb.data", "coreperturb.graph", "coreperturb.evidence",
                 "coreperturb.predictors", "coreperturb.evaluation", "coreperturb.stages",
                 "coreperturb.report"):  # fmt: skip
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr, None)
            funcs = [obj] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                funcs = [f for k, f in vars(obj).items() if inspect.isfunction(f) and not k.startswith("_")]
            for f in funcs:
                kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                params = inspect.signature(f).parameters.values()
                pos = [p for p in params if p.kind in kinds and p.name not in ("self", "cls")]
                if len(pos) > 4:
                    offenders.append(f"{name}.{f.__qualname__}: {len(pos)}")
    assert not offenders, offenders


def test_no_source_file_over_600_lines_and_no_cli_module_over_300() -> None:
    sizes = {p.relative_to(SRC): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert not {p: n for p, n in sizes.items() if n > 600}
    assert not {p: n for p, n in sizes.items() if p.parts[0] == "cli" and n > 300}
