"""Predictors with ``fit`` / ``predict_proba``, registered by name.

The classes are imported on first use (``coreperturb.predictors.CoreVoting``), so that loading one
predictor does not import the others' dependencies (the LLM layer, scikit-learn).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from coreperturb.predictors._base import PREDICTORS, Predictor, make_predictor

_EXPORTS = {
    "CoreVoting": "coreperturb.predictors._core_voting",
    "CoreVotingTransfer": "coreperturb.predictors._core_voting",
    "CoreReasoning": "coreperturb.predictors._llm",
    "LLMIsolated": "coreperturb.predictors._llm",
    "LLMPredictor": "coreperturb.predictors._llm",
    "GeneFrequency": "coreperturb.predictors._simple",
    "KnnRetrieval": "coreperturb.predictors._simple",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # pragma: no cover
    from coreperturb.predictors._core_voting import CoreVoting, CoreVotingTransfer
    from coreperturb.predictors._llm import CoreReasoning, LLMIsolated, LLMPredictor
    from coreperturb.predictors._simple import GeneFrequency, KnnRetrieval

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
