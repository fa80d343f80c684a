"""coreperturb: predict gene responses to unseen perturbations with contrastive KG evidence (CORE).

Pipeline: :mod:`~coreperturb.data` → :mod:`~coreperturb.graph` → :mod:`~coreperturb.evidence` →
:mod:`~coreperturb.llm` / :mod:`~coreperturb.predictors` → :mod:`~coreperturb.config` →
:mod:`~coreperturb.stages` (``fit`` → ``predict`` → ``evaluate_predictions``) →
:mod:`~coreperturb.model_files` / :mod:`~coreperturb.report` → :mod:`~coreperturb.pipeline` (the benchmark)
→ :mod:`~coreperturb.cli`. The names below are imported on first use, so ``import coreperturb`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from coreperturb._version import __version__

_EXPORTS: dict[str, str] = {
    "QueryTable": "coreperturb.data",
    "load_perturbqa": "coreperturb.data",
    "read_query_table": "coreperturb.data",
    "write_synthetic": "coreperturb.data",
    "evaluate": "coreperturb.evaluation",
    "ContrastiveEvidence": "coreperturb.evidence",
    "build_evidence": "coreperturb.evidence",
    "relational_similarity": "coreperturb.evidence",
    "KnowledgeGraph": "coreperturb.graph",
    "build_kg": "coreperturb.graph",
    "load_model": "coreperturb.model_files",
    "save_model": "coreperturb.model_files",
    "BenchmarkConfig": "coreperturb.config",
    "FitConfig": "coreperturb.config",
    "run_benchmark": "coreperturb.pipeline",
    "PREDICTORS": "coreperturb.predictors",
    "CoreVoting": "coreperturb.predictors",
    "GeneFrequency": "coreperturb.predictors",
    "KnnRetrieval": "coreperturb.predictors",
    "LLMPredictor": "coreperturb.predictors",
    "Predictor": "coreperturb.predictors",
    "make_predictor": "coreperturb.predictors",
    "FittedModels": "coreperturb.stages",
    "evaluate_predictions": "coreperturb.stages",
    "fit": "coreperturb.stages",
    "predict": "coreperturb.stages",
    "predict_grid": "coreperturb.stages",
    "top_predictions": "coreperturb.stages",
    "explain": "coreperturb.explanations",
    "fit_to_directory": "coreperturb.api",
    "predict_to_file": "coreperturb.api",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'coreperturb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # pragma: no cover
    from coreperturb.api import fit_to_directory, predict_to_file
    from coreperturb.config import BenchmarkConfig, FitConfig
    from coreperturb.data import QueryTable, load_perturbqa, read_query_table, write_synthetic
    from coreperturb.evaluation import evaluate
    from coreperturb.evidence import ContrastiveEvidence, build_evidence, relational_similarity
    from coreperturb.explanations import explain
    from coreperturb.graph import KnowledgeGraph, build_kg
    from coreperturb.model_files import load_model, save_model
    from coreperturb.pipeline import run_benchmark
    from coreperturb.predictors import (
        PREDICTORS,
        CoreVoting,
        GeneFrequency,
        KnnRetrieval,
        LLMPredictor,
        Predictor,
        make_predictor,
    )
    from coreperturb.stages import (
        FittedModels,
        evaluate_predictions,
        fit,
        predict,
        predict_grid,
        top_predictions,
    )

__all__ = [
    "PREDICTORS",
    "BenchmarkConfig",
    "ContrastiveEvidence",
    "CoreVoting",
    "FitConfig",
    "FittedModels",
    "GeneFrequency",
    "KnnRetrieval",
    "KnowledgeGraph",
    "LLMPredictor",
    "Predictor",
    "QueryTable",
    "__version__",
    "build_evidence",
    "build_kg",
    "evaluate",
    "evaluate_predictions",
    "explain",
    "fit",
    "fit_to_directory",
    "load_model",
    "load_perturbqa",
    "make_predictor",
    "predict",
    "predict_grid",
    "predict_to_file",
    "read_query_table",
    "relational_similarity",
    "run_benchmark",
    "save_model",
    "top_predictions",
    "write_synthetic",
]
