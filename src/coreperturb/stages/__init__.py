"""The public stages: ``fit`` → ``predict`` → ``evaluate``, and genome-wide grids.

:func:`fit` trains every method on the training rows of every (cell line, task) and returns a
:class:`FittedModels` (save it with :func:`coreperturb.model_files.save_model`); :func:`predict` scores any
(perturbation, gene) queries with it; :func:`evaluate_predictions` computes the metrics of labelled
predictions. ``coreperturb benchmark`` is exactly fit (train split) → predict (test split) → evaluate
(:func:`coreperturb.pipeline.run_benchmark`). :func:`predict_grid` scores perturbations × genes in chunks
for genome-wide prediction (``coreperturb predict``).

Where things live (this module re-exports them):

* :mod:`~coreperturb.stages.fitted`: :class:`FittedModels`.
* :mod:`~coreperturb.stages.fitting`: :func:`fit`, :func:`make_model`, data warnings.
* :mod:`~coreperturb.stages.predicting`: :func:`predict`, :func:`evaluate_predictions`.
* :mod:`~coreperturb.stages.names`: name resolution and candidate perturbations.
* :mod:`~coreperturb.stages.ranking`: :class:`Ranking` and :func:`rank_predictions`.
* :mod:`~coreperturb.stages.grids`: :func:`grid_plan`, :func:`predict_grid`, :func:`top_predictions`.
* :mod:`~coreperturb.stages.distributed`: the same grids over Ray Data workers.
"""

from coreperturb.config import FitConfig
from coreperturb.stages.chunking import MAX_PERTURBATIONS_PER_CHUNK, pair_chunks
from coreperturb.stages.fitted import CALIBRATION_COLUMNS, TRAIN_COLUMNS, FittedModels, context_rows
from coreperturb.stages.fitting import (
    MIN_TRAIN_PERTURBATIONS,
    TooLittleDataWarning,
    data_warnings,
    fit,
    make_model,
    uses_llm,
)
from coreperturb.stages.grids import (
    GRID_COLUMNS,
    GridPlan,
    grid_chunks,
    grid_plan,
    kg_coverage,
    predict_grid,
    score_chunk,
    score_pairs,
    top_predictions,
)
from coreperturb.stages.names import (
    GENE_SYMBOL,
    NameResolution,
    UnknownNameWarning,
    candidate_perturbations,
    dropped_candidates,
    known_perturbations,
    resolve_genes,
    resolve_names,
    resolve_perturbations,
    unreachable_perturbations,
    warn_names,
)
from coreperturb.stages.predicting import (
    evaluate_predictions,
    evidence_counts,
    failed_methods,
    llm_stats,
    on_target_rule,
    predict,
    score_columns,
)
from coreperturb.stages.priors import readout_priors
from coreperturb.stages.ranking import (
    DEFAULT_RANK_BY,
    MIN_EXCESS,
    RANK_BY,
    RANK_PER,
    Ranking,
    check_ranking,
    merge_top,
    passes_floor,
    rank_key,
    rank_predictions,
    short_list,
)

__all__ = [
    "CALIBRATION_COLUMNS",
    "DEFAULT_RANK_BY",
    "GENE_SYMBOL",
    "GRID_COLUMNS",
    "MAX_PERTURBATIONS_PER_CHUNK",
    "MIN_EXCESS",
    "MIN_TRAIN_PERTURBATIONS",
    "RANK_BY",
    "RANK_PER",
    "TRAIN_COLUMNS",
    "FitConfig",
    "FittedModels",
    "GridPlan",
    "NameResolution",
    "Ranking",
    "TooLittleDataWarning",
    "UnknownNameWarning",
    "candidate_perturbations",
    "check_ranking",
    "context_rows",
    "data_warnings",
    "dropped_candidates",
    "evaluate_predictions",
    "evidence_counts",
    "failed_methods",
    "fit",
    "grid_chunks",
    "grid_plan",
    "kg_coverage",
    "known_perturbations",
    "llm_stats",
    "make_model",
    "merge_top",
    "on_target_rule",
    "pair_chunks",
    "passes_floor",
    "predict",
    "predict_grid",
    "rank_key",
    "rank_predictions",
    "readout_priors",
    "resolve_genes",
    "resolve_names",
    "resolve_perturbations",
    "score_chunk",
    "score_columns",
    "score_pairs",
    "short_list",
    "top_predictions",
    "unreachable_perturbations",
    "uses_llm",
    "warn_names",
]
