"""Shared fixtures: a small synthetic benchmark written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from coreperturb.data import QueryTable, load_perturbqa, write_synthetic
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.graph import KnowledgeGraph, build_kg
from tests import doubles  # noqa: F401  (registers the `scripted` LLM backend)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def synth_paths(tmp_path_factory: pytest.TempPathFactory) -> SyntheticPaths:
    return write_synthetic(tmp_path_factory.mktemp("synth"), seed=0, cell_lines=("synth_a",), n_genes=300)


@pytest.fixture(scope="session")
def synth_table(synth_paths: SyntheticPaths) -> QueryTable:
    return load_perturbqa(synth_paths.data_dir, synth_paths.cell_lines, ("de", "dir"))


@pytest.fixture(scope="session")
def synth_kg(synth_paths: SyntheticPaths) -> KnowledgeGraph:
    return build_kg(synth_paths.kg_dir)


@pytest.fixture(autouse=True)
def _private_llm_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own shared LLM response cache (never the user's ~/.cache/coreperturb)."""
    monkeypatch.setenv("COREPERTURB_CACHE_DIR", str(tmp_path / "llm-cache"))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory fitted once on the synthetic default (two lines, DE and direction, core_voting and
    gene_frequency), through the library as ``coreperturb fit`` does; tests that edit it copy it first."""
    from coreperturb import BenchmarkConfig, fit_to_directory

    out = tmp_path_factory.mktemp("fit") / "model"
    config = BenchmarkConfig.from_options(methods="core_voting,gene_frequency", tasks="de,dir")
    fit_to_directory(config, out)
    return out
