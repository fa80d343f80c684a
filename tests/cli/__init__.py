"""Tests of the command line: what each command parses and prints (the library is tested at the library)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from coreperturb.cli import app

runner = CliRunner()


def predict(model_dir: Path, *args: str) -> Result:
    """``coreperturb predict --model-dir MODEL_DIR ARGS...`` through the test runner."""
    return runner.invoke(app, ["predict", "--model-dir", str(model_dir), *args])
