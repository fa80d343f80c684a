"""A perturbation's own target: the modality's rule (or the line's own self pairs) decides it, not the
evidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coreperturb._defaults import DEFAULT_CONFIDENCE
from coreperturb.data._genes import modality, on_target_mask
from coreperturb.predictors._conformal import CALL_LABELS, UNCERTAIN
from coreperturb.stages._fitted import FittedModels


def on_target_rule(models: FittedModels, cell_line: str) -> tuple[float, float] | None:
    """``(p_de, p_up)`` of a gene perturbation's own target under the model's modality, or ``None`` (drugs).

    The data decide where they exist: with at least :data:`MIN_ON_TARGET_ROWS` self pairs (perturbation ==
    gene) among the training rows of the DE (direction) task, their Beta(1, 1)-smoothed rate (on the genome
    scale: each asked not-DE self pair weighted as the design says). Otherwise the
    rule: DE with certainty, ``down`` for CRISPRi and knockout, ``up`` for CRISPRa. (PerturbQA has no self
    pairs: its benchmark leaves them out.)
    """

    def make() -> tuple[float, float] | None:
        m = modality(str(models.config.modality))
        if m.on_target is None:
            return None
        p_de, p_up = 1.0, 1.0 if m.on_target == "up" else 0.0
        for task in ("de", "dir"):
            if task not in models.tasks:
                continue
            rows = models.training_rows(cell_line, task)
            own_rows = rows.loc[rows["perturbation"] == rows["gene"]]
            own = own_rows["label"]
            if len(own) >= MIN_ON_TARGET_ROWS:
                w = np.ones(len(own))
                if task == "de" and models.genome_scaled(cell_line):  # asked not-DE self pairs stand for more
                    w = models.calibration_weights(cell_line, own_rows)
                rate = (float((w * own.to_numpy()).sum()) + 1.0) / (float(w.sum()) + 2.0)
                p_de, p_up = (rate, p_up) if task == "de" else (p_de, rate)
        return p_de, p_up

    return models.cached(f"on_target/{cell_line}", make)


MIN_ON_TARGET_ROWS = 5
"""Self pairs in the training rows needed for the data, not the modality's rule, to set on-target scores."""


@dataclass(frozen=True)
class OnTarget:
    """The pairs the modality's rule decides (a perturbation's own target, a gene the model knows) and what
    it says of them: one home for the scores and calls that replace the evidence's there.

    Attributes:
        mask: Per pair, whether the rule decides it.
        rule: ``(p_de, p_up)`` of :func:`on_target_rule`; ``None`` (drugs) decides nothing.
        confidence: The confidence of the calls (the model's): a call is made only where the rule's
            probability reaches it.
    """

    mask: np.ndarray
    rule: tuple[float, float] | None
    confidence: float = DEFAULT_CONFIDENCE

    @classmethod
    def of(
        cls,
        models: FittedModels,
        cell_line: str,
        perturbations: np.ndarray,
        genes: np.ndarray,
        known: np.ndarray,
    ) -> OnTarget:
        """The on-target pairs among ``perturbations`` × ``genes`` (element-wise) of one cell line."""
        rule = on_target_rule(models, cell_line)
        if rule is None:
            return cls(np.zeros(len(genes), dtype=bool), None, models.confidence)
        return cls(on_target_mask(perturbations, genes) & known, rule, models.confidence)

    @property
    def any(self) -> bool:
        """Whether the rule decides any pair."""
        return self.rule is not None and bool(self.mask.any())

    def score(self, task: str) -> float:
        """The rule's P(DE) (``de``) or P(up | DE) (``dir``)."""
        assert self.rule is not None
        return self.rule[0] if task == "de" else self.rule[1]

    def call(self, task: str) -> str:
        """The rule's call: ``DE`` / ``not DE`` (``de``), ``up`` / ``down`` (``dir``) where its probability
        reaches the confidence either way, else ``uncertain``. The modality's rule (probability 1 or 0) always
        calls; rates from a line's own self pairs call only when they are that clear."""
        p = self.score(task)
        pos, neg = CALL_LABELS[task]
        return pos if p >= self.confidence else neg if p <= 1.0 - self.confidence else UNCERTAIN

    def apply(self, task: str, scores: np.ndarray, calls: np.ndarray | None = None) -> None:
        """Overwrite the on-target pairs' scores (and calls) in place with the rule's."""
        if self.any:
            scores[self.mask] = self.score(task)
            if calls is not None:
                calls[self.mask] = self.call(task)


__all__ = ["MIN_ON_TARGET_ROWS", "OnTarget", "on_target_rule"]
