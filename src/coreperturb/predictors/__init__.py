"""Predictors with ``fit`` / ``predict_proba``, registered by name.

The classes are imported on first use (``coreperturb.predictors.CoreVoting``), so that loading one
predictor does not import the others' dependencies (the LLM layer, scikit-learn).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from coreperturb.predictors.base import PREDICTORS, Predictor, make_predictor

_EXPORTS = {
    "CoreVoting": "coreperturb.predictors.core_voting",
    "CoreVotingTransfer": "coreperturb.predictors.core_voting",
    "CoreReasoning": "coreperturb.predictors.llm",
    "LLMIsolated": "coreperturb.predictors.llm",
    "LLMPredictor": "coreperturb.predictors.llm",
    "GeneFrequency": "coreperturb.predictors.simple",
    "KnnRetrieval": "coreperturb.predictors.simple",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # pragma: no cover
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
