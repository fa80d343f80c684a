"""What the commands print about LLM runs: explain --method, the sampling note and the LLM plan."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from coreperturb.cli import app
from coreperturb.data._synthetic import SyntheticPaths
from tests.cli import runner
from tests.doubles.fake_server import FakeOpenAIServer


def _bench(paths: SyntheticPaths, url: str, out: Path, *extra: str) -> list[str]:
    return [
        "benchmark", "--data-dir", str(paths.data_dir), "--kg-dir", str(paths.kg_dir), "--cell-lines", "synth_a",
        "--methods", "core_reasoning,llm_isolated", "--llm", "openai", "--base-url", url, "--llm-model", "fake",
        "--max-queries", "60", "--calibration-queries", "30", "--out", str(out), *extra,
    ]  # fmt: skip


def test_explain_llm_prints_prompt_rationale_and_p_yes(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    test = pd.read_csv(synth_paths.data_dir / "synth_a-de.csv")
    row = test[test["split"] == "test"].iloc[0]
    with FakeOpenAIServer() as srv:
        res = runner.invoke(
            app,
            [
                "explain",
                "--data-dir",
                str(synth_paths.data_dir),
                "--kg-dir",
                str(synth_paths.kg_dir),
                "--cell-line",
                "synth_a",
                "--perturbation",
                str(row["pert"]),
                "--gene",
                str(row["gene"]),
                "--method",
                "core_reasoning",
                "--llm",
                "openai",
                "--base-url",
                srv.base_url,
                "--llm-model",
                "fake",
                "--reasoning-tokens",
                "32",
            ],
            env={**os.environ, "COLUMNS": "200"},
        )
    assert res.exit_code == 0, res.output
    assert "prompt: user" in res.output and "Observed perturbations related" in res.output
    assert "rationale" in res.output and "weigh" in res.output
    assert "P(yes) =" in res.output and "uncalibrated" in res.output


def test_small_sample_warns_and_explains_the_sampling(
    synth_paths: SyntheticPaths, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    res = runner.invoke(
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
            "gene_frequency,core_voting",
            "--max-queries",
            "60",
            "--out",
            str(tmp_path / "s"),
        ],
        env={**os.environ, "COLUMNS": "400"},
    )
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # said under the summary table
    assert "note: synth_a/de: per-gene AUROC rests on only" in text and "samples gene by gene" in text
    assert "of the test split" in text
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())  # and kept for the report
    assert any("per-gene AUROC rests on only" in w for w in manifest["warnings"])


def test_max_queries_bounds_calibration_and_the_plan_says_so(
    synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    import re

    args = _bench(synth_paths, "", tmp_path / "c")
    args[args.index("--calibration-queries") + 1] = "200"
    args[args.index("--max-queries") + 1] = "10"
    with FakeOpenAIServer() as srv:
        args[args.index("--base-url") + 1] = srv.base_url
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        asked = sum(srv.state.requests.values())
    planned = re.search(
        r"LLM plan: .*?: ([\d,]+) calls \(([\d,]+) calibration", res.output.replace("\n", " ")
    )
    assert planned is not None, res.output
    total, calibration = (int(g.replace(",", "")) for g in planned.groups())
    # 2 methods x (at most 10 calibration + at most 10 test) per line and task: not 200 calibration calls
    assert 0 < asked <= total and calibration <= 2 * 10 * 2
