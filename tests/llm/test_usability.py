"""LLM runs users can read and afford: the shared response cache, reasoning mode and explain --method."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from coreperturb.cli import app
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.llm._backends import Completion
from coreperturb.llm._cache import LLMCache, ResultRow, default_response_cache
from tests.doubles.fake_server import FakeOpenAIServer

runner = CliRunner()


def _bench(paths: SyntheticPaths, url: str, out: Path, *extra: str) -> list[str]:
    return [
        "benchmark", "--data-dir", str(paths.data_dir), "--kg-dir", str(paths.kg_dir), "--cell-lines", "synth_a",
        "--methods", "core_reasoning,llm_isolated", "--llm", "openai", "--base-url", url, "--llm-model", "fake",
        "--max-queries", "60", "--calibration-queries", "30", "--out", str(out), *extra,
    ]  # fmt: skip


def test_default_response_cache_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COREPERTURB_CACHE_DIR", str(tmp_path / "x"))
    assert default_response_cache() == tmp_path / "x" / "llm_responses.sqlite"
    monkeypatch.delenv("COREPERTURB_CACHE_DIR")
    assert default_response_cache().name == "llm_responses.sqlite" and "coreperturb" in str(
        default_response_cache()
    )


def test_second_run_into_another_out_makes_no_calls(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    with FakeOpenAIServer() as srv:
        first = runner.invoke(app, _bench(synth_paths, srv.base_url, tmp_path / "a"))
        assert first.exit_code == 0, first.output
        asked = sum(srv.state.requests.values())
        assert asked > 0
        second = runner.invoke(app, _bench(synth_paths, srv.base_url, tmp_path / "b"))
        assert second.exit_code == 0, second.output
        assert sum(srv.state.requests.values()) == asked  # every answer came from the shared cache
    assert " 0 LLM calls" in second.output
    a = pd.read_parquet(tmp_path / "a" / "predictions.parquet")
    b = pd.read_parquet(tmp_path / "b" / "predictions.parquet")
    pd.testing.assert_series_equal(a["score"], b["score"])
    # the result stores are per run; the answers live in the shared cache
    assert (tmp_path / "a" / "llm_cache.sqlite").exists() and (tmp_path / "b" / "llm_cache.sqlite").exists()
    assert default_response_cache().exists()


def test_reasoning_mode_stores_a_rationale_for_every_scored_row(
    synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    with FakeOpenAIServer() as srv:
        res = runner.invoke(
            app, _bench(synth_paths, srv.base_url, tmp_path / "r", "--reasoning-tokens", "32")
        )
        assert res.exit_code == 0, res.output
        asked = [t for t in srv.state.requests if "explain your reasoning" in t]
    det = pd.read_parquet(tmp_path / "r" / "llm_details.parquet")
    scored = det[det["p_yes"].notna()]
    assert len(scored) >= 100
    assert scored["rationale"].str.len().gt(0).all()
    assert scored["rationale"].str.contains("weigh").all()
    assert len(asked) >= len(scored)  # one rationale request per query (plus calibration)


def test_shared_cache_takes_concurrent_writers(tmp_path: Path) -> None:
    shared = tmp_path / "shared.sqlite"
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            cache = LLMCache(tmp_path / f"run{w}.sqlite", shared)
            for i in range(40):
                rows = [ResultRow(f"q{i}", 0.5, "logprobs", None, False)]
                cache.write_results(
                    "u", "m", rows, responses=[(f"k{w}-{i}", Completion("Yes"))], model="model", template="t"
                )
            cache.close()
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    cache = LLMCache(tmp_path / "run0.sqlite", shared)
    assert all(cache.get(f"k{w}-39") is not None for w in range(4))
    assert len(cache.done("u", "m")) == 40
    cache.close()


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
