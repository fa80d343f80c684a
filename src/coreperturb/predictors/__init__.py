"""Predictors with ``fit`` / ``predict_proba``, registered by name."""

from coreperturb.predictors.base import PREDICTORS, Predictor, make_predictor
from coreperturb.predictors.core_voting import CoreVoting, CoreVotingTransfer
from coreperturb.predictors.llm import CoreReasoning, LLMIsolated, LLMPredictor
from coreperturb.predictors.simple import GeneFrequency, KnnRetrieval

__all__ = [
    "PREDICTORS",
    "CoreReasoning",
    "CoreVoting",
    "CoreVotingTransfer",
    "GeneFrequency",
    "KnnRetrieval",
    "LLMIsolated",
    "LLMPredictor",
    "Predictor",
    "make_predictor",
]
