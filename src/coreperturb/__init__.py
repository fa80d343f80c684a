"""coreperturb: predict gene responses to unseen perturbations with contrastive KG evidence (CORE).

The public API is the names below and the ``__all__`` of the subpackages that follow the pipeline:
:mod:`~coreperturb.data` → :mod:`~coreperturb.graph` → :mod:`~coreperturb.evidence` →
:mod:`~coreperturb.llm` / :mod:`~coreperturb.predictors` → :mod:`~coreperturb.stages` (``fit`` →
``predict`` → ``evaluate_predictions``) → :mod:`~coreperturb.evaluation` / :mod:`~coreperturb.report` →
:mod:`~coreperturb.serve` and the command line (:mod:`~coreperturb.cli`); the exceptions are in
:mod:`~coreperturb.errors`. Modules whose names start with an underscore are private. The names below are
imported on first use, so ``import coreperturb`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from coreperturb._deprecation import install_moved_modules
from coreperturb._version import __version__

install_moved_modules()  # ``coreperturb.config`` and the other modules that are private now, for a while

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
    "load_model": "coreperturb._model_files",
    "save_model": "coreperturb._model_files",
    "BenchmarkConfig": "coreperturb._config",
    "FitConfig": "coreperturb._config",
    "run_benchmark": "coreperturb._pipeline",
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
    "explain": "coreperturb._explanations",
    "fit_to_directory": "coreperturb._api",
    "predict_to_file": "coreperturb._api",
    "BenchmarkResult": "coreperturb._pipeline",
    "CorePerturbError": "coreperturb.errors",
    "DataConfig": "coreperturb._config",
    "EvaluateConfig": "coreperturb._config",
    "Explanation": "coreperturb._explanations",
    "FitReport": "coreperturb._api",
    "KGConfig": "coreperturb._config",
    "LLMConfig": "coreperturb._config",
    "PredictReport": "coreperturb._api",
    "reseal_model": "coreperturb._model_files",
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
    from coreperturb._api import FitReport, PredictReport, fit_to_directory, predict_to_file
    from coreperturb._config import (
        BenchmarkConfig,
        DataConfig,
        EvaluateConfig,
        FitConfig,
        KGConfig,
        LLMConfig,
    )
    from coreperturb._explanations import Explanation, explain
    from coreperturb._model_files import load_model, reseal_model, save_model
    from coreperturb._pipeline import BenchmarkResult, run_benchmark
    from coreperturb.data import QueryTable, load_perturbqa, read_query_table, write_synthetic
    from coreperturb.errors import CorePerturbError
    from coreperturb.evaluation import evaluate
    from coreperturb.evidence import ContrastiveEvidence, build_evidence, relational_similarity
    from coreperturb.graph import KnowledgeGraph, build_kg
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
    "BenchmarkResult",
    "ContrastiveEvidence",
    "CorePerturbError",
    "CoreVoting",
    "DataConfig",
    "EvaluateConfig",
    "Explanation",
    "FitConfig",
    "FitReport",
    "FittedModels",
    "GeneFrequency",
    "KGConfig",
    "KnnRetrieval",
    "KnowledgeGraph",
    "LLMConfig",
    "LLMPredictor",
    "PredictReport",
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
    "reseal_model",
    "run_benchmark",
    "save_model",
    "top_predictions",
    "write_synthetic",
]
