"""LLM runs users can afford: the shared response cache (concurrent writers, no second call) and reasoning mode."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from coreperturb import BenchmarkConfig, BenchmarkResult, run_benchmark
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.llm._backends import Completion
from coreperturb.llm._cache import LLMCache, ResultRow, default_response_cache
from coreperturb.report import write_run
from tests.doubles.fake_server import FakeOpenAIServer


def _run(paths: SyntheticPaths, url: str, out: Path, **extra: object) -> BenchmarkResult:
    """``coreperturb benchmark`` as library calls: both LLM methods against the fake server, outputs in ``out``."""
    config = BenchmarkConfig.from_options(
        data_dir=paths.data_dir, kg_dir=paths.kg_dir, cell_lines="synth_a", methods="core_reasoning,llm_isolated",
        llm="openai", base_url=url, llm_model="fake", max_queries=60, calibration_queries=30, **extra,
    )  # fmt: skip
    out.mkdir(parents=True)
    result = run_benchmark(config, workdir=out)
    write_run(result, config, out)
    return result


def test_default_response_cache_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COREPERTURB_CACHE_DIR", str(tmp_path / "x"))
    assert default_response_cache() == tmp_path / "x" / "llm_responses.sqlite"
    monkeypatch.delenv("COREPERTURB_CACHE_DIR")
    assert default_response_cache().name == "llm_responses.sqlite" and "coreperturb" in str(
        default_response_cache()
    )


def test_second_run_into_another_out_makes_no_calls(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    with FakeOpenAIServer() as srv:
        _run(synth_paths, srv.base_url, tmp_path / "a")
        asked = sum(srv.state.requests.values())
        assert asked > 0
        second = _run(synth_paths, srv.base_url, tmp_path / "b")
        assert sum(srv.state.requests.values()) == asked  # every answer came from the shared cache
    assert second.llm_stats and all(
        st.n_calls == 0 and st.n_cache_hits > 0 for st in second.llm_stats.values()
    )
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
        _run(synth_paths, srv.base_url, tmp_path / "r", reasoning_tokens=32)
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
