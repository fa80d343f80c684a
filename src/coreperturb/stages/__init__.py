"""The public stages: ``fit`` → ``predict`` → ``evaluate``, and genome-wide grids.

:func:`fit` trains every method on the training rows of every (cell line, task) and returns a
:class:`FittedModels` (save it with :func:`coreperturb.save_model`); :func:`predict` scores any
(perturbation, gene) queries with it; :func:`evaluate_predictions` computes the metrics of labelled
predictions. ``coreperturb benchmark`` is exactly fit (train split) → predict (test split) → evaluate
(:func:`coreperturb.run_benchmark`). :func:`predict_grid` scores perturbations × genes in chunks
for genome-wide prediction (``coreperturb predict``).
"""

from coreperturb._config import FitConfig
from coreperturb.stages._fitted import FittedModels
from coreperturb.stages._fitting import TooLittleDataWarning, fit
from coreperturb.stages._grids import GRID_COLUMNS, GridPlan, grid_plan, predict_grid, top_predictions
from coreperturb.stages._names import (
    NameResolution,
    UnknownNameWarning,
    candidate_perturbations,
    resolve_genes,
    resolve_perturbations,
)
from coreperturb.stages._pilots import propose_pilot
from coreperturb.stages._predicting import evaluate_predictions, predict
from coreperturb.stages._priors import readout_priors
from coreperturb.stages._ranking import DEFAULT_RANK_BY, RANK_BY, Ranking, rank_predictions

__all__ = [
    "DEFAULT_RANK_BY",
    "GRID_COLUMNS",
    "RANK_BY",
    "FitConfig",
    "FittedModels",
    "GridPlan",
    "NameResolution",
    "Ranking",
    "TooLittleDataWarning",
    "UnknownNameWarning",
    "candidate_perturbations",
    "evaluate_predictions",
    "fit",
    "grid_plan",
    "predict",
    "predict_grid",
    "propose_pilot",
    "rank_predictions",
    "readout_priors",
    "resolve_genes",
    "resolve_perturbations",
    "top_predictions",
]
