"""Rankings of predictions: the top genes per perturbation or perturbations per gene."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coreperturb._defaults import DEFAULT_RANK_BY, MIN_EXCESS, RANK_BY_NAMES
from coreperturb._deprecation import keyword_options
from coreperturb.errors import CorePerturbError
from coreperturb.stages._fitted import FittedModels

RANK_BY: dict[str, str] = {
    "excess": "excess",
    "effect": "effect",
    "p_de": "p_de",
    "up": "excess_up",
    "down": "excess_down",
}
"""``rank_by`` name → the column a ranking sorts by (descending). ``excess`` (the default) is ``p_de -
p_prior``: how much more likely the gene is DE under this perturbation than under a usual one, which
maximises the expected excess DE of a list when ``p_de`` is calibrated; ``effect`` is the shrunk log risk
ratio over the prior (the earlier default). ``up`` / ``down`` rank by that direction's own excess,
``P(DE and up) - p_prior * up_rate`` (``excess_up``; ``excess_down`` alike), among the rows predicted to go
that way (:func:`rank_key`); their floor is that excess too."""
if tuple(RANK_BY) != RANK_BY_NAMES:  # pragma: no cover - a guard for whoever adds a ranking
    raise AssertionError("coreperturb._defaults.RANK_BY_NAMES must list the keys of RANK_BY")
RANK_PER: tuple[str, ...] = ("perturbation", "gene")
# the defaults live in coreperturb._defaults (read by the command line without loading the library)


@dataclass(frozen=True)
class Ranking:
    """Keep the ``top`` rows of each perturbation (``per="perturbation"``: its genes) or of each gene
    (``per="gene"``: its perturbations), ranked by a column of :data:`RANK_BY`, highest first, among the
    rows that pass the floor.

    Attributes:
        top: Rows kept per perturbation or gene (and cell line and method), at most.
        rank_by: ``excess`` (default: ``p_de - p_prior``), ``effect``, ``p_de``, ``up`` or ``down`` (the lift
            of P(DE and up / down); needs a direction model).
        per: ``perturbation`` or ``gene``.
        min_excess: The floor: only rows with ``p_de - p_prior >= min_excess`` (a direction list: that
            direction's excess) and some positive evidence are listed (default :data:`MIN_EXCESS`; see
            :func:`passes_floor`); ``None`` lists every row. A list may then be shorter than ``top``: the
            rest would be guesses.
    """

    top: int
    rank_by: str = DEFAULT_RANK_BY
    per: str = "perturbation"
    min_excess: float | None = MIN_EXCESS

    def __post_init__(self) -> None:
        if self.top < 1:
            raise CorePerturbError("top must be >= 1")
        if self.rank_by not in RANK_BY:
            raise CorePerturbError(f"unknown rank_by {self.rank_by!r}; choose from {', '.join(RANK_BY)}")
        if self.per not in RANK_PER:
            raise CorePerturbError(f"unknown per {self.per!r}; choose from {', '.join(RANK_PER)}")
        if self.min_excess is not None and not -1 <= self.min_excess <= 1:
            raise CorePerturbError(f"min_excess must be between -1 and 1, got {self.min_excess}")


@keyword_options
def rank_predictions(
    predictions: pd.DataFrame,
    top: int,
    *,
    rank_by: str = DEFAULT_RANK_BY,
    per: str = "perturbation",
    min_excess: float | None = MIN_EXCESS,
) -> pd.DataFrame:
    """The ``top`` rows per perturbation (or per gene) of a prediction frame, best first.

    Args:
        predictions: Rows with the columns of :data:`GRID_COLUMNS` (from :func:`predict_grid` or a file
            that ``coreperturb predict`` wrote).
        top: Rows kept per (cell line, method, perturbation) or (cell line, method, gene).
        rank_by: ``excess`` | ``effect`` | ``p_de`` | ``up`` | ``down`` (see :data:`RANK_BY`).
        per: ``perturbation`` (which genes does p change) or ``gene`` (which perturbations change g).
        min_excess: The floor (:func:`passes_floor`: ``p_de - p_prior >= min_excess`` and positive evidence;
            default :data:`MIN_EXCESS`); ``None`` keeps every row.

    Returns:
        The kept rows, grouped by perturbation (or gene) in name order, best first within a group; rows
        whose ranking column is NaN come last (``up`` / ``down``: rows predicted to go the other way are not
        listed).
    """
    r = Ranking(top, rank_by, per, min_excess)
    if r.min_excess is not None:
        predictions = predictions.loc[passes_floor(predictions, r.min_excess, rank_by=r.rank_by)]
    group = [c for c in ("cell_line", "method") if c in predictions.columns] + [r.per]
    key = rank_key(predictions, r.rank_by)
    if r.rank_by in ("up", "down"):  # a row predicted to go the other way is no answer: never listed
        predictions, key = predictions.loc[np.isfinite(key)], key[np.isfinite(key)]
    order = (
        predictions.assign(_key=key)
        .sort_values(
            [*group, "_key"], ascending=[True] * len(group) + [False], kind="stable", na_position="last"
        )
        .index
    )
    out = predictions.loc[order]
    return out.groupby(group, sort=False).head(r.top).reset_index(drop=True)


def short_list(n: int, top: int, who: str = "responders") -> str:
    """What a list of ``n`` rows means when fewer than ``top`` passed the floor (``""`` when it is full):
    the one wording of the CLI, the reports and the explorer."""
    if n >= top:
        return ""
    if not n:
        return f"no {who} above the floor: any would be a guess"
    return f"{n} {who if n > 1 else who.removesuffix('s')} above the floor; the rest would be guesses"


def passes_floor(
    predictions: pd.DataFrame, min_excess: float = MIN_EXCESS, *, rank_by: str = DEFAULT_RANK_BY
) -> np.ndarray:
    """Rows presented as responders: ``p_de - p_prior >= min_excess`` (a direction list: that direction's
    excess, ``excess_up`` / ``excess_down``) with at least one related perturbation that made the gene
    respond (``n_pos_evidence > 0``: no gene is a responder on no evidence). On-target rows need no evidence;
    those the modality's rule decides (P(DE) 1) are listed whatever the floor, while a rate from a line's own
    self pairs must reach the floor like any other estimate."""
    col = RANK_BY.get(rank_by) if rank_by in ("up", "down") else None
    if col is not None and col in predictions.columns:
        excess = predictions[col].to_numpy(dtype=np.float64)
    else:
        p = predictions["p_de"] if "p_de" in predictions.columns else predictions["score"]
        excess = p.to_numpy(dtype=np.float64) - predictions["p_prior"].to_numpy(dtype=np.float64)
    evidence = np.ones(len(excess), dtype=bool)
    if "n_pos_evidence" in predictions.columns:
        evidence = predictions["n_pos_evidence"].to_numpy(dtype=np.float64) > 0
    ok = excess >= min_excess
    if "on_target" in predictions.columns:
        target = predictions["on_target"].to_numpy(dtype=bool)
        p_de = (predictions["p_de"] if "p_de" in predictions.columns else predictions["score"]).to_numpy()
        evidence |= target
        ok |= target & (p_de >= 1.0)  # the modality's rule: certain, listed whatever the floor
    return np.asarray(ok & evidence)


def rank_key(predictions: pd.DataFrame, rank_by: str) -> np.ndarray:
    """The value a ranking sorts by (descending; NaN last). ``up`` / ``down`` rank by ``effect_up`` /
    ``effect_down`` among the rows whose predicted direction agrees (``p_up >= 0.5`` / ``< 0.5``): a gene
    predicted to go down is no answer to "what goes up", however unusual that is for the gene."""
    key = RANK_BY.get(rank_by)
    if key is None:
        raise CorePerturbError(f"unknown rank_by {rank_by!r}; choose from {', '.join(RANK_BY)}")
    if (
        key not in predictions.columns
        and rank_by in ("up", "down")
        and f"effect_{rank_by}" in predictions.columns
    ):
        key = f"effect_{rank_by}"  # a file of an earlier release: its direction lists ranked by effect
    if key not in predictions.columns:
        raise CorePerturbError(f"predictions have no {key!r} column to rank by")
    v = predictions[key].to_numpy(dtype=np.float64)
    if rank_by in ("up", "down"):
        p_up = predictions["p_up"].to_numpy(dtype=np.float64)
        agrees = p_up >= 0.5 if rank_by == "up" else p_up < 0.5
        v = np.where(agrees, v, np.nan)
    return v


def merge_top(frames: Iterable[pd.DataFrame], ranking: Ranking | None) -> Iterator[pd.DataFrame]:
    """Apply a :class:`Ranking` to a stream of chunks of whole perturbations.

    Per perturbation, each chunk is ranked as it comes. Per gene, a gene's best perturbations may come from
    any chunk: the running top rows of every gene are kept (memory: genes × ``top`` rows per method) and
    yielded at the end, one frame per method.
    """
    if ranking is None:
        yield from frames
        return
    if ranking.per == "perturbation":
        for f in frames:
            yield rank_predictions(
                f, ranking.top, rank_by=ranking.rank_by, per=ranking.per, min_excess=ranking.min_excess
            )
        return
    best: dict[str, pd.DataFrame] = {}
    for f in frames:
        for method, part in f.groupby("method", sort=False):
            prev = best.get(str(method))
            both = part if prev is None else pd.concat([prev, part], ignore_index=True)
            best[str(method)] = rank_predictions(
                both, ranking.top, rank_by=ranking.rank_by, per=ranking.per, min_excess=ranking.min_excess
            )
    yield from best.values()


def check_ranking(models: FittedModels, ranking: Ranking | None, methods: Sequence[str]) -> None:
    """A direction ranking needs a direction model of every method and cell line it ranks."""
    if ranking is None or ranking.rank_by not in ("up", "down"):
        return
    missing = [
        f"{line}/{m}" for line in models.cell_lines for m in methods if (line, "dir", m) not in models.models
    ]
    if missing:
        raise CorePerturbError(
            f"ranking by {ranking.rank_by!r} needs a direction (dir) model; none for {', '.join(missing)} "
            "(fit with the dir task, or rank by effect or p_de)"
        )
