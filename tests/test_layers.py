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
