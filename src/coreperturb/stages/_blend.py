"""Every screen counts: a line's own answer blended with the other lines' answer.

With several screened lines, a line's CORE answer pools its own answer and ``others`` on the training table's
scale, before the genome map and the calls: ``expit(w * logit(own) + (1 - w) * logit(others))`` (or ``w * own + (1
- w) * others``: :attr:`coreperturb.FitConfig.other_lines_pool`). ``others`` is what the other lines answer for the
pair (their measurement where their screen asked it, read as the chance it carries over:
:func:`coreperturb.stages._unscreened.read_measured`; their model elsewhere: the answer for a line with no screen,
:mod:`coreperturb.stages._unscreened`) and ``w = N / (N + K)``, N the line's own training perturbations of the
task and K :attr:`coreperturb.FitConfig.other_lines_weight` (the other lines' answer counts as K perturbations of
the line's own screen). A pilot of 50 perturbations leans on the other lines (w 0.2), a full screen of 1,000 on
itself (w 0.83). Chosen on training pairs: ``python benchmarks/pilot_blend.py``.

The calls and the genome map are calibrated on blended calibration rows (the map on the calibration grid's,
:mod:`coreperturb.stages._calibration_grid`): each other line answers a line's calibration pairs with a context
that lacks their perturbations in that line
(:meth:`coreperturb.predictors.CoreVoting.with_context`), as it answers the line's new perturbations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from coreperturb._util import logit
from coreperturb.predictors._base import Predictor
from coreperturb.predictors._core_voting import CoreVoting
from coreperturb.stages._fitted import FittedModels
from coreperturb.stages._unscreened import (
    lines_mean,
    measured_labels,
    measured_or,
    measured_reading,
    read_measured,
)

ScoreWith = Callable[[Predictor, str], np.ndarray]
"""``score_with(model, line)``: a source line's model's raw answers (the training table's scale) for the pairs."""


@dataclass(frozen=True)
class Blend:
    """How one unit's answer is blended.

    Attributes:
        own_weight: ``w``: the weight of the line's own answer.
        sources: The other lines whose answers are averaged into ``others``.
        own_perturbations: N, the line's own training perturbations of the task.
        pool: ``probabilities`` or ``log_odds`` (:attr:`coreperturb.FitConfig.other_lines_pool`).
    """

    own_weight: float
    sources: tuple[str, ...]
    own_perturbations: int
    pool: str = "probabilities"

    def mix(self, own: np.ndarray, others: np.ndarray) -> np.ndarray:
        """``w * own + (1 - w) * others`` (or their log-odds so pooled); ``own`` where either is NaN."""
        ok = np.isfinite(others) & np.isfinite(own)
        w = self.own_weight
        if self.pool == "log_odds":
            with np.errstate(invalid="ignore"):
                pooled = expit(w * logit(own) + (1.0 - w) * logit(others))
        else:
            pooled = w * own + (1.0 - w) * others
        return np.where(ok, pooled, own)

    def describe(self) -> str:
        """``own screen (N perturbations) 0.83, hepg2 + jurkat 0.17``."""
        return (
            f"own screen ({self.own_perturbations} perturbations) {self.own_weight:.2f}, "
            f"{' + '.join(self.sources)} {1 - self.own_weight:.2f}"
        )


def blend_of(models: FittedModels, cell_line: str, task: str, method: str) -> Blend | None:
    """The blend of one unit; ``None`` where its own answer stands alone: a single line, ``cross_line`` off,
    ``other_lines_weight`` 0 (models of earlier releases), a method that reads no other lines (gene_frequency,
    LLM methods), or no other line with a model of the same task and method."""
    config = models.config
    k = float(config.other_lines_weight)
    model = models.models.get((cell_line, task, method))
    if k <= 0 or not config.cross_line or not isinstance(model, CoreVoting):
        return None
    sources = tuple(
        s
        for s in models.cell_lines
        if s != cell_line and isinstance(models.models.get((s, task, method)), CoreVoting)
    )
    if not sources:
        return None
    n = len(models.training_perturbations(cell_line, task))
    return Blend(n / (n + k), sources, n, config.other_lines_pool)


def blend_record(models: FittedModels, cell_line: str, task: str, method: str) -> dict[str, object] | None:
    """How a unit's answers mix its own with the other lines' in ``model.json`` (``None``: its own alone)."""
    b = blend_of(models, cell_line, task, method)
    if b is None:
        return None
    return {
        "own_weight": b.own_weight,
        "other_lines": list(b.sources),
        "own_perturbations": b.own_perturbations,
        "pool": b.pool,
        "other_lines_mean": models.config.other_lines_mean,
        "measured_pairs": models.config.measured_pairs,
        # the chance that a pair measured not DE / DE (direction: down / up) in another line is so here
        **_reading(models, task),
    }


def _reading(models: FittedModels, task: str) -> dict[str, object]:
    """How ``measured_pairs`` read a measurement (:func:`coreperturb.stages._unscreened.measured_reading`): the
    rates (``q0, q1``) or the curves (``[a, b]`` of not DE, of DE)."""
    reading = measured_reading(models, task)
    if models.config.measured_pairs != "gene_rates":
        return {"measured_rates": list(reading) if reading is not None else None}
    return {
        "measured_rates": None,
        "measured_curves": [list(c) for c in reading] if reading is not None else None,
    }


def source_answers(
    models: FittedModels,
    key: tuple[str, str, str],
    sources: tuple[str, ...],
    *,
    pairs: pd.DataFrame,
    score_with: ScoreWith,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per source line, ``(answer, label)`` for each pair of the unit ``key``: its measurement where its
    screen asked the pair (read as :func:`coreperturb.stages._unscreened.read_measured` reads it; ``label``: the
    label it measured, NaN elsewhere), else its model's answer (NaN for a gene it never read out). The other
    lines' answer is their mean over the lines that answer."""
    line, task, method = key
    perts = pairs["perturbation"].astype(str).to_numpy()
    genes = pairs["gene"].astype(str).to_numpy()
    out = []
    for s in sources:
        model = np.asarray(score_with(models.model(s, task, method), s), dtype=np.float64)
        model = np.where(models.readout_genes(s, task).get_indexer(pd.Index(genes)) >= 0, model, np.nan)
        labels = (
            measured_labels(models, s, task, perts, genes)
            if task in models.tasks
            else np.full(len(genes), np.nan)
        )
        seen = read_measured(models, task, labels, genes=genes, target=line)
        answer = measured_or(model, models, s, task, (perts, genes), seen=seen)
        out.append((answer, np.where(np.isfinite(model) & np.isfinite(seen), labels, np.nan)))
    return out


def query_scorer(queries: pd.DataFrame) -> ScoreWith:
    """``score_with`` for query rows: a source line's model's raw answers (its ``score``) for ``queries``."""
    return lambda model, _: model.score(queries)["score"].to_numpy()


def blended(
    models: FittedModels,
    key: tuple[str, str, str],
    own: np.ndarray,
    *,
    pairs: pd.DataFrame,
    score_with: ScoreWith,
) -> np.ndarray:
    """``own`` (the raw answers of the unit ``key``, cell line, task and method, for ``pairs``) blended with
    the other lines' answer (:func:`blend_of`); ``own`` itself where there is no blend, where the other lines
    have no answer, and where ``own`` is NaN."""
    own = np.asarray(own, dtype=np.float64)
    b = blend_of(models, *key)
    if b is None or not len(own):
        return own
    answers = source_answers(models, key, b.sources, pairs=pairs, score_with=score_with)
    return b.mix(own, lines_mean([a for a, _ in answers], models.config.other_lines_mean))


def _hiding(models: FittedModels, key: tuple[str, str, str], rows: pd.DataFrame) -> ScoreWith:
    """Source lines' answers for calibration ``rows`` of the unit ``key``, from a context without the
    rows' perturbations in the unit's line."""
    line, task, _ = key
    hidden = set(rows["perturbation"].astype(str))

    def score_with(model: Predictor, source: str) -> np.ndarray:
        context = models.context_rows(source, task)
        keep = ~(
            (context["cell_line"].astype(str) == line) & context["perturbation"].astype(str).isin(hidden)
        )
        assert isinstance(model, CoreVoting)
        return model.with_context(context.loc[keep].reset_index(drop=True)).score(rows)["score"].to_numpy()

    return score_with


def blend_calibration(models: FittedModels, say: Callable[[str], None]) -> FittedModels:
    """``models`` with every blended unit's calibration scores blended as its answers are: each other line
    answers the calibration pairs with a context that lacks their perturbations in this line."""
    cal = models.calibration
    if cal is None or cal.empty or "perturbation" not in cal.columns:
        return models
    scores = cal["score"].to_numpy(dtype=np.float64).copy()
    groups: dict[Any, Any] = cal.groupby(["cell_line", "task", "method"], sort=True).indices
    changed = False
    for unit, idx in groups.items():
        key = (str(unit[0]), str(unit[1]), str(unit[2]))
        b = blend_of(models, *key)
        if b is None:
            continue
        rows = cal.iloc[idx].reset_index(drop=True)
        say(
            f"{key[0]}/{key[1]}: {key[2]} blends {b.describe()}; calibrating the blend on held-out perturbations"
        )
        scores[idx] = blended(models, key, scores[idx], pairs=rows, score_with=_hiding(models, key, rows))
        changed = True
    if not changed:
        return models
    return replace(models, calibration=cal.assign(score=scores))


__all__ = [
    "Blend",
    "blend_calibration",
    "blend_of",
    "blend_record",
    "blended",
    "query_scorer",
    "source_answers",
]
