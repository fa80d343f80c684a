"""A line with no screen of its own is answered from the lines the model holds: what each of them measured of a
pair where it did, its model's answer elsewhere, averaged (:meth:`FittedModels.source_lines`); DE answers are
averaged on the training tables' scale, then mapped to the genome (:meth:`FittedModels.no_screen_genome`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from coreperturb._util import nanmean
from coreperturb.predictors._base import Predictor
from coreperturb.predictors._effect import effect_score
from coreperturb.stages._fitted import FittedModels
from coreperturb.stages._flags import join_flags
from coreperturb.stages._frames import grid_frame
from coreperturb.stages._on_target import OnTarget
from coreperturb.stages._priors import gene_priors


def measured_labels(
    models: FittedModels, line: str, task: str, perturbations: np.ndarray, genes: np.ndarray
) -> np.ndarray:
    """What ``line``'s screen measured of each pair: its label where the pair was asked (DE: 1 / 0; direction:
    up 1 / down 0), NaN elsewhere."""
    key = pd.MultiIndex.from_arrays([np.asarray(perturbations).astype(str), np.asarray(genes).astype(str)])
    return _labels(models, line, task).reindex(key).to_numpy(dtype=np.float64)


def _labels(models: FittedModels, line: str, task: str) -> pd.Series:
    """``line``'s training labels of ``task`` by (perturbation, gene), the first of any repeat (computed once)."""

    def make() -> pd.Series:
        rows = models.training_rows(line, task)
        labels = pd.Series(
            rows["label"].to_numpy(dtype=np.float64),
            index=pd.MultiIndex.from_arrays([rows["perturbation"].astype(str), rows["gene"].astype(str)]),
        )
        return labels[~labels.index.duplicated()]

    out: pd.Series = models.cached(f"measured/{line}/{task}", make)
    return out


def read_measured(models: FittedModels, task: str, labels: np.ndarray) -> np.ndarray:
    """Another line's measured ``labels`` (NaN: not measured) as an answer for this line
    (:attr:`coreperturb.FitConfig.measured_pairs`): the labels themselves, or :func:`transfer_rates`' chance
    (NaN throughout where no pair was asked by two lines)."""
    if models.config.measured_pairs != "rates":
        return labels
    rates = transfer_rates(models, task)
    if rates is None:  # no pair asked by two lines: nothing says how a measurement carries over
        return np.full(len(labels), np.nan)
    return np.where(np.isfinite(labels), np.where(labels > 0.5, rates[1], rates[0]), np.nan)


def measured(
    models: FittedModels, line: str, task: str, perturbations: np.ndarray, genes: np.ndarray
) -> np.ndarray:
    """What ``line``'s screen measured of each pair (:func:`measured_labels`), read as an answer for another line
    (:func:`read_measured`); NaN where it was not asked (the line's model answers there). Chosen on training
    pairs over its model's answer alone and over also reading an unlisted gene of a whole DE list as not DE
    (``benchmarks/new_line.py --choose``)."""
    return read_measured(models, task, measured_labels(models, line, task, perturbations, genes))


TRANSFER_PRIOR = 10.0
"""Pseudo-pairs at the lines' base rate that :func:`transfer_rates` adds to each of its two counts."""


def transfer_rates(models: FittedModels, task: str) -> tuple[float, float] | None:
    """``(q0, q1)``: the chance that a pair one screened line measured not DE (q0) or DE (q1) is DE in another
    (direction: up), over every ordered pair of lines, from the pairs both lines' training rows ask (on the
    tables' scale, where the blend pools); each shrunk towards the rate of the asked pairs by
    :data:`TRANSFER_PRIOR` pairs. ``None`` where no pair was asked by two lines."""

    def make() -> tuple[float, float] | None:
        lines = sorted(models.train["cell_line"].astype(str).unique())
        tables = {line: _labels(models, line, task) for line in lines}
        hits, pairs = np.zeros(2), np.zeros(2)
        for source in lines:
            for target in lines:
                if source == target:
                    continue
                both = tables[source].index.intersection(tables[target].index)
                if not len(both):
                    continue
                s, t = tables[source].reindex(both).to_numpy(), tables[target].reindex(both).to_numpy()
                for label in (0, 1):
                    hits[label] += t[s == label].sum()
                    pairs[label] += (s == label).sum()
        if not pairs.sum():
            return None
        rate = float(hits.sum() / pairs.sum())
        q = (hits + TRANSFER_PRIOR * rate) / (pairs + TRANSFER_PRIOR)
        return float(q[0]), float(q[1])

    out: tuple[float, float] | None = models.cached(f"transfer_rates/{task}", make)
    return out


def measured_or(
    answer: pd.Series | np.ndarray,
    models: FittedModels,
    line: str,
    task: str,
    pairs: tuple[np.ndarray, np.ndarray],
    *,
    seen: np.ndarray | None = None,
) -> np.ndarray:
    """A source line's answer: its screen's measurement where it has one, else its model's (``seen``: the
    line's :func:`measured` of the pairs, where the caller has it already)."""
    model = np.asarray(answer, dtype=np.float64)
    if task not in models.tasks or not np.isfinite(model).any():
        return model
    seen = measured(models, line, task, *pairs) if seen is None else seen
    return np.where(np.isfinite(seen) & np.isfinite(model), seen, model)


def _sum(parts: Sequence[pd.DataFrame], column: str) -> np.ndarray:
    return np.sum([p[column].to_numpy(dtype=np.float64) for p in parts], axis=0)


def unscreened_frames(
    models: FittedModels,
    cell_line: str,
    base: dict[str, np.ndarray],
    methods: Sequence[str],
    *,
    frames: Callable[..., Iterator[pd.DataFrame]],
    flag: np.ndarray,
    cov_rows: np.ndarray,
    score: Callable[[Predictor, str], dict[str, Any]],
    unknown_perturbation: np.ndarray | None,
) -> Iterator[pd.DataFrame]:
    """A line with no screen of its own: each source line's answer (:meth:`FittedModels.source_lines`),
    averaged where the source reads the gene out (its measurement where it measured the pair:
    :func:`coreperturb.stages._unscreened.measured`); evidence counts summed over the screens; calls from the
    sources' calibration rows pooled; every row flagged ``no_screen``."""
    n = len(base["gene"])
    sources = models.source_lines(cell_line)
    priors = [gene_priors(models, line, base["gene"]) for line in sources]
    prior, up_rate = nanmean([p[0] for p in priors]), nanmean([p[1] for p in priors])
    target = OnTarget.of(models, cell_line, base["perturbation"], base["gene"], np.isfinite(prior))
    flag = join_flags(np.asarray(flag, dtype=object), np.full(n, "no_screen", dtype=object))
    if target.any:
        flag = join_flags(flag, np.where(target.mask, "on_target", "").astype(object))
    for method in methods:
        parts = [
            next(
                frames(
                    models,
                    line,
                    {**base, "cell_line": np.full(n, line, dtype=object)},
                    [method],
                    flag=np.full(n, "", dtype=object),
                    cov_rows=cov_rows,
                    score=score,
                    unknown_perturbation=unknown_perturbation,
                    blend=False,  # each screened line's own answer
                    genome=False,  # on its table's scale: averaged there, then mapped (no_screen_genome)
                )
            )
            for line in sources
        ]
        # each screened line's answer: what its screen measured of the pair where it did, its model elsewhere
        pairs = (base["perturbation"], base["gene"])
        p_de = models.no_screen_genome(
            cell_line,
            method,
            nanmean(
                [measured_or(p["p_de"], models, s, "de", pairs) for s, p in zip(sources, parts, strict=True)]
            ),
            base["gene"],
        )
        p_up = nanmean(
            [measured_or(p["p_up"], models, s, "dir", pairs) for s, p in zip(sources, parts, strict=True)]
        )
        has_dir = any((line, "dir", method) in models.models for line in sources)
        call = models.calls(cell_line, "de", method, p_de, prior=prior, genes=base["gene"])
        call_dir = (
            models.calls(cell_line, "dir", method, p_up, prior=up_rate, genes=base["gene"])
            if has_dir
            else np.full(n, "", dtype=object)
        )
        target.apply("de", p_de, call)
        if has_dir:
            target.apply("dir", p_up, call_dir)
        yield grid_frame(
            base,
            method,
            (p_de, p_up, prior, up_rate),
            (_sum(parts, "n_pos_evidence"), _sum(parts, "n_neg_evidence")),
            cov_rows=cov_rows,
            on_target=target.mask,
            calls=(call, call_dir),
            flag=flag,
        )


def unscreened_unit(
    models: FittedModels,
    unit: pd.DataFrame,
    line: str,
    task: str,
    methods: Sequence[str],
    *,
    predict: Callable[..., pd.DataFrame],
) -> list[pd.DataFrame]:
    """The queries of a line with no screen: each source line's answer (:meth:`FittedModels.source_lines`: its
    measurement where its screen has one, :func:`coreperturb.stages._unscreened.measured`, else its model)
    averaged where the source reads the gene out, evidence counts summed, calls from the sources' pooled
    calibration rows; ``flag`` says ``no_screen``."""
    sources = models.source_lines(line)
    answers = [predict(models, unit.assign(cell_line=s), methods=methods) for s in sources]
    genes = unit["gene"].to_numpy()
    parts = []
    for method in methods:
        rows = [a.loc[a["method"] == method].reset_index(drop=True) for a in answers]

        def mean(column: str, rows: list[pd.DataFrame] = rows) -> np.ndarray:
            """Each source's answer: its screen's measurement of the pair where it has one, else its model."""
            if column not in ("score", "score_sample"):
                return nanmean([r[column].to_numpy(dtype=np.float64) for r in rows])
            pairs = (unit["perturbation"].to_numpy(), genes)
            return nanmean(
                [measured_or(r[column], models, s, task, pairs) for s, r in zip(sources, rows, strict=True)]
            )

        prior, score_sample = mean("p_prior"), mean("score_sample")
        # DE: averaged on the tables' scale, then mapped to the genome (FittedModels.no_screen_genome)
        score = models.no_screen_genome(line, method, score_sample, genes) if task == "de" else mean("score")
        n_pos = np.sum([r["n_pos_evidence"].to_numpy() for r in rows], axis=0)
        n_neg = np.sum([r["n_neg_evidence"].to_numpy() for r in rows], axis=0)
        target = OnTarget.of(models, line, unit["perturbation"].to_numpy(), genes, np.isfinite(prior))
        target.apply(task, score)
        call = models.calls(line, task, method, score, prior=prior, genes=genes)
        target.apply(task, score, call)
        part = rows[0].assign(
            cell_line=line,
            score=score,
            p_prior=prior,
            excess=score - prior,
            effect=effect_score(score, prior, n_pos + n_neg),
            score_sample=score_sample,
            p_prior_sample=mean("p_prior_sample"),
            n_pos_evidence=n_pos,
            n_neg_evidence=n_neg,
            on_target=target.mask,
            call=call,
            flag="no_screen",
        )
        parts.append(part)
    return parts


__all__ = [
    "measured",
    "measured_labels",
    "measured_or",
    "read_measured",
    "transfer_rates",
    "unscreened_frames",
    "unscreened_unit",
]
