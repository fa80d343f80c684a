"""coreperturb: predict gene responses to unseen perturbations with contrastive KG evidence (CORE).

Pipeline: :mod:`~coreperturb.data` → :mod:`~coreperturb.graph` → :mod:`~coreperturb.evidence` →
:mod:`~coreperturb.predictors` → :mod:`~coreperturb.evaluate` → :mod:`~coreperturb.stages` (``fit`` →
``predict`` → ``evaluate_predictions``) and :mod:`~coreperturb.model_files` → :mod:`~coreperturb.pipeline`
(the benchmark) / CLI.
"""

__version__ = "0.1.0"

from coreperturb.data import QueryTable, load_perturbqa, read_query_table, write_synthetic
from coreperturb.evaluate import evaluate
from coreperturb.evidence import ContrastiveEvidence, build_evidence, relational_similarity
from coreperturb.graph import KnowledgeGraph, build_kg
from coreperturb.model_files import load_model, save_model
from coreperturb.pipeline import BenchmarkConfig, run_benchmark
from coreperturb.predictors import PREDICTORS, CoreVoting, GeneFrequency, KnnRetrieval, make_predictor
from coreperturb.stages import FitConfig, FittedModels, evaluate_predictions, fit, predict, predict_grid

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
    "QueryTable",
    "build_evidence",
    "build_kg",
    "evaluate",
    "evaluate_predictions",
    "fit",
    "load_model",
    "load_perturbqa",
    "make_predictor",
    "predict",
    "predict_grid",
    "read_query_table",
    "relational_similarity",
    "run_benchmark",
    "save_model",
    "write_synthetic",
]
