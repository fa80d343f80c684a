"""Predictors with ``fit`` / ``predict_proba``, registered by name."""

from coreperturb.predictors.base import PREDICTORS, Predictor, make_predictor
from coreperturb.predictors.core_voting import CoreVoting
from coreperturb.predictors.simple import GeneFrequency, KnnRetrieval

__all__ = ["PREDICTORS", "CoreVoting", "GeneFrequency", "KnnRetrieval", "Predictor", "make_predictor"]
