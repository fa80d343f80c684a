"""The direction of a pair as the grids give it: the direction model's answer, blended, with the on-target rule
and the calls (shared by :func:`coreperturb.stages._grids.predict_grid` and the explorer's direction row)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from coreperturb.predictors._base import Predictor
from coreperturb.stages._blend import blended
from coreperturb.stages._fitted import FittedModels
from coreperturb.stages._on_target import OnTarget


def scorer(
    score: Callable[[Predictor, str], dict[str, Any]], task: str
) -> Callable[[Predictor, str], np.ndarray]:
    """A source line's model's raw answers of ``task`` for the pairs ``score`` scores."""
    return lambda model, _: np.asarray(score(model, task)["score"], dtype=np.float64)


def direction_answer(
    models: FittedModels,
    unit: tuple[str, str],
    base: dict[str, np.ndarray],
    context: tuple[np.ndarray, OnTarget, np.ndarray],
    *,
    score: Callable[[Predictor, str], dict[str, Any]],
    blend: bool,
    own: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(p_up, call_dir)`` of the pairs in ``base`` for one (cell line, method) ``unit``: the direction
    model's answer (``own``, where the caller scored it already), blended as the DE answer is, the on-target
    rule, NaN where nothing is known (``context``: the genes' up-rates, the on-target rows, the rows with no
    score). Without a direction model: NaN (the rule's rows excepted) and no call."""
    cell_line, method = unit
    up_rate, target, no_score = context
    n = len(base["gene"])
    dir_model = models.models.get((cell_line, "dir", method))
    p_up = np.full(n, np.nan)
    if dir_model is not None:
        p_up = np.asarray((own if own is not None else score(dir_model, "dir"))["score"], dtype=np.float64)
        if blend:
            pairs = pd.DataFrame({"perturbation": base["perturbation"], "gene": base["gene"]})
            p_up = blended(
                models, (cell_line, "dir", method), p_up, pairs=pairs, score_with=scorer(score, "dir")
            )
    p_up = p_up.copy()
    target.apply("dir", p_up)  # the rule knows the direction, with or without a direction model
    p_up[no_score] = np.nan
    if dir_model is None:
        return p_up, np.full(n, "", dtype=object)
    call_dir = models.calls(cell_line, "dir", method, p_up, prior=up_rate, genes=base["gene"])
    target.apply("dir", p_up, call_dir)
    return p_up, call_dir


__all__ = ["direction_answer", "scorer"]
