"""Ray scale-out: the LLM step over Ray Data gives the same predictions as the local executor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb.data import QueryTable
from coreperturb.graph import KnowledgeGraph
from coreperturb.llm import LLMSettings
from coreperturb.llm._distributed import RayExecutor
from coreperturb.predictors._llm import CoreReasoning, stratified_by_gene
from tests.doubles.fake_server import FakeOpenAIServer, Faults

ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'coreperturb[ray]')")


@pytest.fixture(scope="module")
def local_ray() -> object:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def test_ray_executor_matches_local(
    local_ray: object, synth_kg: KnowledgeGraph, synth_table: QueryTable, tmp_path: Path
) -> None:
    sub = synth_table.subset("synth_a", "de")
    train, test = sub.split("train"), stratified_by_gene(sub.split("test"), 80, seed=1).reset_index(drop=True)
    with FakeOpenAIServer(faults=Faults(error500=0.2, malformed=0.05)) as srv:
        settings = LLMSettings(backend="openai", base_url=srv.base_url, model="fake", max_retries=3)
        out: dict[str, pd.DataFrame] = {}
        for name, executor in (("local", None), ("ray", RayExecutor(settings, num_workers=2, batch_size=16))):
            m = CoreReasoning(
                synth_kg,
                llm=settings,
                result_store=tmp_path / f"{name}.sqlite",
                response_cache=tmp_path / f"{name}-responses.sqlite",  # each executor asks the server itself
                calibration_queries=40,
                executor=executor,
            ).fit(train)
            out[name] = m.score_table(test)
            assert m.stats_.n_calls > 0 and m.stats_.n_cache_hits == 0
    a, b = out["local"], out["ray"]
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy())
    pd.testing.assert_series_equal(a["error"], b["error"])  # the same malformed rows fail on both
    assert a["error"].notna().any() and (~a["from_cache"]).all() and (~b["from_cache"]).all()


def test_ray_grid_prediction_equals_local(
    local_ray: object, synth_kg: KnowledgeGraph, synth_table: QueryTable, tmp_path: Path
) -> None:
    """predict_to_file(executor="ray") (``predict --executor ray``): the same chunks, scored on Ray Data
    workers, written in the same order."""
    from coreperturb import predict_to_file
    from coreperturb.stages import FitConfig, fit

    models = fit(synth_table, synth_kg, FitConfig(methods=("core_voting", "gene_frequency")))
    outs = {}
    for executor in ("local", "ray"):
        out = tmp_path / f"{executor}.parquet"
        predict_to_file(
            models, out, perturbations="all", methods=["all"], pairs_per_chunk=3000, executor=executor
        )
        outs[executor] = pd.read_parquet(out)
    assert len(outs["local"]) > 10 * 3000  # several chunks
    pd.testing.assert_frame_equal(outs["local"], outs["ray"])
