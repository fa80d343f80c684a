"""A line with no screen of its own is answered from the lines the model holds: what each of them measured of a
pair where it did, its model's answer elsewhere, averaged (:meth:`FittedModels.source_lines`; their log-odds by
default, :attr:`coreperturb.FitConfig.no_screen_mean`); DE answers are averaged on the training tables' scale, then
mapped to the genome (:meth:`FittedModels.no_screen_genome`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from coreperturb._util import logit, nanmean
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


def lines_mean(answers: Sequence[np.ndarray], how: str) -> np.ndarray:
    """Several lines' answers averaged into one, row by row over those that answer (NaN where none does):
    ``how`` ``probabilities``, their mean; ``log_odds``, ``expit`` of their log-odds' mean
    (:attr:`coreperturb.FitConfig.other_lines_mean`, :attr:`coreperturb.FitConfig.no_screen_mean`)."""
    if how != "log_odds":
        return nanmean(answers)
    return np.asarray(expit(nanmean([logit(np.asarray(a, dtype=np.float64)) for a in answers])))


def measured_reading(models: FittedModels, task: str) -> tuple[Any, ...] | None:
    """What :attr:`coreperturb.FitConfig.measured_pairs` reads a measurement with: ``None`` for ``labels``;
    :func:`transfer_rates` for ``rates``; :func:`transfer_curves` for ``gene_rates`` (either ``None`` where no
    pair was asked by two lines)."""
    reading = models.config.measured_pairs
    if reading == "labels":
        return None
    return transfer_rates(models, task) if reading == "rates" else transfer_curves(models, task)


def read_measured(
    models: FittedModels,
    task: str,
    labels: np.ndarray,
    *,
    genes: np.ndarray | None = None,
    target: str | None = None,
) -> np.ndarray:
    """Another line's measured ``labels`` (NaN: not measured) of ``genes`` as an answer for the line ``target``
    (:func:`measured_reading`): the labels themselves; :func:`transfer_rates`' chance; or
    :func:`transfer_curves`' chance given the gene's rate in ``target`` (:func:`target_rates`). NaN throughout
    where no pair was asked by two lines."""
    if models.config.measured_pairs == "labels":
        return labels
    reading = measured_reading(models, task)
    out = np.full(len(labels), np.nan)
    seen = np.flatnonzero(np.isfinite(labels))
    if reading is None or not len(
        seen
    ):  # no pair asked by two lines: nothing says how a measurement carries over
        return out
    if models.config.measured_pairs == "rates":
        q0, q1 = reading
    else:
        if genes is None:
            raise ValueError("measured_pairs='gene_rates' reads a measurement with its genes")
        # the gene's rate of the measured pairs only (most pairs of a genome-wide query were never measured)
        x = logit(target_rates(models, task, np.asarray(genes)[seen].astype(str), target))
        (a0, b0), (a1, b1) = reading
        q0, q1 = expit(a0 + b0 * x), expit(a1 + b1 * x)
    out[seen] = np.where(labels[seen] > 0.5, q1, q0)
    return out


def measured(
    models: FittedModels,
    line: str,
    task: str,
    perturbations: np.ndarray,
    genes: np.ndarray,
    *,
    target: str | None = None,
) -> np.ndarray:
    """What ``line``'s screen measured of each pair (:func:`measured_labels`), read as an answer for the line
    ``target`` (:func:`read_measured`); NaN where it was not asked (the line's model answers there). Chosen on
    training pairs over its model's answer alone and over also reading an unlisted gene of a whole DE list as
    not DE (``benchmarks/new_line.py --choose``)."""
    labels = measured_labels(models, line, task, perturbations, genes)
    return read_measured(models, task, labels, genes=genes, target=target)


TRANSFER_PRIOR = 10.0
"""Pseudo-pairs at the lines' base rate that :func:`transfer_rates` adds to each of its two counts."""


def transfer_rates(models: FittedModels, task: str) -> tuple[float, float] | None:
    """``(q0, q1)``: the chance that a pair one screened line measured not DE (q0) or DE (q1) is DE in another
    (direction: up), over every ordered pair of lines, from the pairs both lines' training rows ask (on the
    tables' scale, where the blend pools); each shrunk towards the rate of the asked pairs by
    :data:`TRANSFER_PRIOR` pairs. ``None`` where no pair was asked by two lines."""

    def make() -> tuple[float, float] | None:
        shared = _shared_pairs(models, task)
        if shared is None:
            return None
        s, t, _ = shared
        hits = np.array([t[s == label].sum() for label in (0, 1)], dtype=np.float64)
        pairs = np.array([(s == label).sum() for label in (0, 1)], dtype=np.float64)
        rate = float(hits.sum() / pairs.sum())
        q = (hits + TRANSFER_PRIOR * rate) / (pairs + TRANSFER_PRIOR)
        return float(q[0]), float(q[1])

    out: tuple[float, float] | None = models.cached(f"transfer_rates/{task}", make)
    return out


GENE_RATE_PRIOR = 5.0
"""Pseudo-asks at the line's rate by which :func:`gene_rates` shrinks a gene's rate in a line."""


def _gene_counts(models: FittedModels, line: str, task: str) -> tuple[pd.Series, pd.Series, float]:
    """``line``'s training labels of ``task`` per gene: their sum, their count, and the line's rate (computed
    once; the rate NaN for a line without such rows)."""

    def make() -> tuple[pd.Series, pd.Series, float]:
        labels = _labels(models, line, task)
        by = labels.groupby(level=1)
        return by.sum(), by.size(), float(labels.mean())

    out: tuple[pd.Series, pd.Series, float] = models.cached(f"gene_counts/{line}/{task}", make)
    return out


def gene_rates(models: FittedModels, line: str, task: str) -> pd.Series:
    """``line``'s training rate of each gene it asked (DE; direction: up), shrunk towards the line's rate by
    :data:`GENE_RATE_PRIOR` asks (empty for a line without training rows of ``task``)."""

    def make() -> pd.Series:
        if _labels(models, line, task).empty:
            return pd.Series(dtype=np.float64)
        sums, sizes, base = _gene_counts(models, line, task)
        return (sums + GENE_RATE_PRIOR * base) / (sizes + GENE_RATE_PRIOR)

    out: pd.Series = models.cached(f"gene_rates/{line}/{task}", make)
    return out


def target_rates(models: FittedModels, task: str, genes: np.ndarray, target: str | None) -> np.ndarray:
    """Each gene's rate in ``target`` (:func:`gene_rates`; its line's rate for a gene it never asked); for a
    line without training rows of ``task`` (or ``None``), the mean over the lines that have them."""
    own = target is not None and not gene_rates(models, target, task).empty
    lines = [str(target)] if own else sorted(models.train["cell_line"].astype(str).unique())
    rates = []
    for line in lines:
        r = gene_rates(models, line, task)
        if not r.empty:
            base = _gene_counts(models, line, task)[2]
            rates.append(r.reindex(genes).fillna(base).to_numpy(dtype=np.float64))
    return nanmean(rates) if rates else np.full(len(genes), np.nan)


def transfer_curves(models: FittedModels, task: str) -> tuple[tuple[float, float], ...] | None:
    """``((a0, b0), (a1, b1))``: a pair one screened line measured not DE (0) or DE (1) (direction: down / up)
    is DE (up) in another line with chance ``expit(a + b * logit(r))``, ``r`` the gene's rate in that line
    (:func:`gene_rates`, the pair itself left out); a logistic regression per measurement over the pairs two
    lines' training rows both ask, every ordered pair of lines (:func:`transfer_rates`' chance, ``b = 0``,
    where one outcome has fewer than 10 pairs of each kind). ``None`` where no pair was asked by two lines."""

    def make() -> tuple[tuple[float, float], ...] | None:
        rates, shared = transfer_rates(models, task), _shared_pairs(models, task)
        if rates is None or shared is None:
            return None
        s, t, x = shared
        return tuple(_curve(x[s == label], t[s == label], rates[label]) for label in (0, 1))

    out: tuple[tuple[float, float], ...] | None = models.cached(f"transfer_curves/{task}", make)
    return out


def _shared_pairs(models: FittedModels, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Over every ordered pair of lines, the pairs both lines' training rows ask: the source's label, the
    target's, and the log-odds of the gene's rate in the target with the pair left out (:func:`gene_rates`).
    ``None`` where no pair was asked by two lines."""

    def make() -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        lines = sorted(models.train["cell_line"].astype(str).unique())
        tables = {line: _labels(models, line, task) for line in lines}
        ss, ts, xs = [], [], []
        for source, target in itertools.permutations(lines, 2):
            both = tables[source].index.intersection(tables[target].index)
            if not len(both):
                continue
            sums, sizes, base = _gene_counts(models, target, task)
            t = tables[target].reindex(both).to_numpy()
            g = both.get_level_values(1)
            # the gene's rate in the target (gene_rates) with the pair itself left out
            r = (sums.reindex(g).to_numpy() - t + GENE_RATE_PRIOR * base) / (
                sizes.reindex(g).to_numpy() - 1 + GENE_RATE_PRIOR
            )
            ss.append(tables[source].reindex(both).to_numpy())
            ts.append(t)
            xs.append(logit(r))
        if not ss:
            return None
        return np.concatenate(ss), np.concatenate(ts), np.concatenate(xs)

    out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = models.cached(f"shared_pairs/{task}", make)
    return out


def _curve(x: np.ndarray, t: np.ndarray, rate: float) -> tuple[float, float]:
    """``(a, b)`` of ``P(t) = expit(a + b * x)``: the logistic regression with scikit-learn's default penalty
    (``b² / 2``, the intercept free), solved by Newton's method here so that a prediction does not import
    scikit-learn; ``(logit(rate), 0)`` where either outcome has < 10 pairs."""
    if min(int(t.sum()), int(len(t) - t.sum())) < 10:
        return float(logit(np.array(rate))), 0.0
    design = np.column_stack([np.ones(len(x)), x])
    penalty = np.array([0.0, 1.0])

    def loss(beta: np.ndarray) -> float:
        z = design @ beta
        return float(np.sum(np.logaddexp(0.0, z) - t * z) + 0.5 * penalty @ beta**2)

    beta = np.array([float(logit(np.array(t.mean()))), 0.0])
    for _ in range(200):  # Newton's method, each step halved until the loss falls
        p = expit(design @ beta)
        grad = design.T @ (p - t) + penalty * beta
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(2)
        step, size, now = np.linalg.solve(hess, grad), 1.0, loss(beta)
        while size > 1e-8 and loss(beta - size * step) > now:
            size /= 2
        beta = beta - size * step
        if np.abs(size * step).max() < 1e-12:
            break
    return float(beta[0]), float(beta[1])


def measured_or(
    answer: pd.Series | np.ndarray,
    models: FittedModels,
    line: str,
    task: str,
    pairs: tuple[np.ndarray, np.ndarray],
    *,
    seen: np.ndarray | None = None,
    target: str | None = None,
) -> np.ndarray:
    """A source line's answer for the line ``target``: its screen's measurement where it has one, else its
    model's (``seen``: the line's :func:`measured` of the pairs, where the caller has it already)."""
    model = np.asarray(answer, dtype=np.float64)
    if task not in models.tasks or not np.isfinite(model).any():
        return model
    seen = measured(models, line, task, *pairs, target=target) if seen is None else seen
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
            lines_mean(
                [
                    measured_or(p["p_de"], models, s, "de", pairs, target=cell_line)
                    for s, p in zip(sources, parts, strict=True)
                ],
                models.config.no_screen_mean,
            ),
            base["gene"],
        )
        p_up = lines_mean(
            [
                measured_or(p["p_up"], models, s, "dir", pairs, target=cell_line)
                for s, p in zip(sources, parts, strict=True)
            ],
            models.config.no_screen_mean,
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
            return lines_mean(
                [
                    measured_or(r[column], models, s, task, pairs, target=line)
                    for s, r in zip(sources, rows, strict=True)
                ],
                models.config.no_screen_mean,
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
    "gene_rates",
    "lines_mean",
    "measured",
    "measured_labels",
    "measured_or",
    "measured_reading",
    "read_measured",
    "target_rates",
    "transfer_curves",
    "transfer_rates",
    "unscreened_frames",
    "unscreened_unit",
]
