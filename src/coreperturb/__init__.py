"""coreperturb: predict gene responses to unseen perturbations with contrastive KG evidence (CORE).

Pipeline: :mod:`~coreperturb.data` → :mod:`~coreperturb.graph` → :mod:`~coreperturb.evidence` →
:mod:`~coreperturb.predictors` → :mod:`~coreperturb.evaluate` → :mod:`~coreperturb.pipeline` / CLI.
"""

__version__ = "0.1.0"

from coreperturb.data import QueryTable, load_perturbqa, read_query_table, write_synthetic
from coreperturb.evaluate import evaluate
from coreperturb.evidence import ContrastiveEvidence, build_evidence, relational_similarity
from coreperturb.graph import KnowledgeGraph, build_kg
from coreperturb.pipeline import BenchmarkConfig, run_benchmark
from coreperturb.predictors import PREDICTORS, CoreVoting, GeneFrequency, KnnRetrieval, make_predictor

__all__ = [
    "PREDICTORS",
    "BenchmarkConfig",
    "ContrastiveEvidence",
    "CoreVoting",
    "GeneFrequency",
    "KnnRetrieval",
    "KnowledgeGraph",
    "QueryTable",
    "build_evidence",
    "build_kg",
    "evaluate",
    "load_perturbqa",
    "make_predictor",
    "read_query_table",
    "relational_similarity",
    "run_benchmark",
    "write_synthetic",
]
