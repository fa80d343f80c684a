"""Perturbation × gene grids: plans, chunked scoring with flags, priors and effects (``coreperturb predict``)."""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from coreperturb._defaults import PAIRS_PER_CHUNK, TOP
from coreperturb._deprecation import keyword_options
from coreperturb._profiling import stage
from coreperturb._threads import SingleThreadedBlas, effective_threads, retune
from coreperturb._util import positions
from coreperturb.predictors._base import Predictor
from coreperturb.stages._blend import blended
from coreperturb.stages._chunking import MAX_PERTURBATIONS_PER_CHUNK, in_order
from coreperturb.stages._direction import direction_answer, scorer
from coreperturb.stages._fitted import FittedModels
from coreperturb.stages._flags import gene_flags, join_flags, perturbation_flags
from coreperturb.stages._frames import grid_frame
from coreperturb.stages._names import (
    UnknownNameWarning,
    candidate_pool,
    resolve_genes,
    resolve_perturbations,
)
from coreperturb.stages._on_target import OnTarget
from coreperturb.stages._predicting import evidence_counts, score_columns
from coreperturb.stages._priors import gene_priors as _gene_priors
from coreperturb.stages._ranking import (
    DEFAULT_RANK_BY,
    MIN_EXCESS,
    Ranking,
    check_ranking,
    merge_top,
    rank_predictions,
)
from coreperturb.stages._unscreened import unscreened_frames

GRID_COLUMNS: tuple[str, ...] = (
    "cell_line",
    "perturbation",
    "gene",
    "method",
    "p_de",
    "p_up",
    "p_prior",
    "excess",
    "effect",
    "p_de_up",
    "p_de_down",
    "effect_up",
    "effect_down",
    "excess_up",
    "excess_down",
    "n_pos_evidence",
    "n_neg_evidence",
    "kg_coverage",
    "on_target",
    "call",
    "call_dir",
    "flag",
)
"""Columns written by ``coreperturb predict`` (one row per cell line, perturbation, gene and method)."""


@dataclass(frozen=True)
class GridPlan:
    """What :func:`predict_grid` scores: per cell line, the perturbations and the readout genes."""

    units: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]

    @property
    def n_perturbations(self) -> int:
        """Perturbations over all cell lines."""
        return sum(len(p) for _, p, _ in self.units)

    @property
    def n_pairs(self) -> int:
        """(perturbation, gene) pairs over all cell lines."""
        return sum(len(p) * len(g) for _, p, g in self.units)


@keyword_options
def grid_plan(
    models: FittedModels,
    perturbations: Sequence[str] | None,
    *,
    genes: Sequence[str] | None = None,
    cell_lines: Sequence[str] | None = None,
) -> GridPlan:
    """Perturbations × genes per cell line.

    Args:
        models: Fitted models.
        perturbations: Canonical perturbation names (see :func:`resolve_perturbations`); ``None`` = every
            candidate of each cell line (:func:`candidate_perturbations`).
        genes: Readout genes (default: the genes observed in the cell line's training rows).
        cell_lines: Cell lines (default: all in the model); a line with no screen in the model is answered
            from the lines it holds (:meth:`FittedModels.source_lines`; rows flagged ``no_screen``).
    """
    units = []
    for line in models.require_cell_lines(cell_lines, unscreened=True):
        if perturbations is not None:
            perts = list(perturbations)
        else:
            perts, dropped, out = candidate_pool(models, line)
            if out:
                shown = ", ".join(f"{p} ({why})" for p, why in list(out.items())[:4])
                warnings.warn(
                    f"{line}: {len(out)} genes are out of reach of {models.config.modality} and are not "
                    f"candidates: {shown}{', ...' if len(out) > 4 else ''}",
                    UnknownNameWarning,
                    stacklevel=2,
                )
            if dropped:
                warnings.warn(
                    f"{line}: {len(dropped)} KG names are no human gene symbol and are not candidates: "
                    f"{', '.join(dropped[:8])}{', ...' if len(dropped) > 8 else ''}",
                    UnknownNameWarning,
                    stacklevel=2,
                )
        g = list(genes) if genes is not None else list(models.readout_genes(line, "de"))
        units.append((line, tuple(map(str, perts)), tuple(map(str, g))))
    return GridPlan(tuple(units))


def _grid_scores(model: Predictor, perts: Sequence[str], genes: Sequence[str], task: str) -> dict[str, Any]:
    """Scores of every perts × genes pair (perturbation-major) of one unit."""
    return score_columns(model.score_grid(perts, genes, task))


def _method_frames(
    models: FittedModels,
    cell_line: str,
    base: dict[str, np.ndarray],
    methods: Sequence[str],
    *,
    flag: np.ndarray,
    cov_rows: np.ndarray,
    score: Callable[[Predictor, str], dict[str, Any]],
    unknown_perturbation: np.ndarray | None = None,
    side_by_side: bool = True,
    blend: bool = True,
    genome: bool = True,
) -> Iterator[pd.DataFrame]:
    """One frame of :data:`GRID_COLUMNS` per method for the pairs in ``base`` (cell_line, perturbation,
    gene); ``score(model, task)`` scores them with one fitted model. Rows of genes never a readout in
    training, and of perturbations neither the model nor the KG knows (``unknown_perturbation``, a row
    mask), get NaN scores and no call: nothing is known of them, not even a prior for a typo's effect. With
    ``blend``, a CORE answer is blended with the other lines' (:mod:`coreperturb.stages._blend`); without
    ``genome``, ``p_de`` stays on the training table's scale (a source line's part of a no-screen answer)."""
    if not models.screened(cell_line):
        yield from unscreened_frames(
            models,
            cell_line,
            base,
            methods,
            frames=_method_frames,
            flag=flag,
            cov_rows=cov_rows,
            score=score,
            unknown_perturbation=unknown_perturbation,
        )
        return
    prior, up_rate = _gene_priors(models, cell_line, base["gene"])
    unknown_gene = ~np.isfinite(prior)
    no_score = unknown_gene if unknown_perturbation is None else unknown_gene | unknown_perturbation
    target = OnTarget.of(models, cell_line, base["perturbation"], base["gene"], ~unknown_gene)
    if target.any:
        flag = join_flags(
            np.asarray(flag, dtype=object), np.where(target.mask, "on_target", "").astype(object)
        )
    for method in methods:
        de_model = models.model(cell_line, "de", method)
        dir_model = models.models.get((cell_line, "dir", method))
        dir_scores = None
        if side_by_side and dir_model is not None and not dir_model.uses_llm and effective_threads() > 1:
            # the DE and direction models share no work beyond the query embeddings (cached in the KG);
            # scoring them side by side fills the second core while one of them is single-threaded
            with ThreadPoolExecutor(1) as pool:
                later = pool.submit(contextvars.copy_context().run, score, dir_model, "dir")
                de = score(de_model, "de")
                dir_scores = later.result()
        else:
            de = score(de_model, "de")
        if "n_pos_evidence" not in de:
            q = pd.DataFrame({"perturbation": base["perturbation"], "gene": base["gene"]})
            c = evidence_counts(models.kg, models.training_rows(cell_line, "de"), q)
            de["n_pos_evidence"] = c["n_pos_evidence"].to_numpy()
            de["n_neg_evidence"] = c["n_neg_evidence"].to_numpy()
        p_de = np.asarray(de["score"], dtype=np.float64).copy()
        if blend:  # with the other lines' answers, on the table's scale (stages._blend)
            pairs = pd.DataFrame({"perturbation": base["perturbation"], "gene": base["gene"]})
            p_de = blended(
                models, (cell_line, "de", method), p_de, pairs=pairs, score_with=scorer(score, "de")
            )
        to_genome = models.scale(cell_line, method) if genome else None
        if to_genome is not None:  # the chance over the readout genes, not over the table's asked pairs
            p_de = to_genome(p_de)
        target.apply("de", p_de)
        p_de[no_score] = np.nan
        call = models.calls(cell_line, "de", method, p_de, prior=prior, genes=base["gene"])
        target.apply("de", p_de, call)  # the modality's rule decides, not the evidence
        p_up, call_dir = direction_answer(
            models,
            (cell_line, method),
            base,
            (up_rate, target, no_score),
            score=score,
            blend=blend,
            own=dir_scores,
        )
        yield grid_frame(
            base,
            method,
            (p_de, p_up, prior, up_rate),
            (de["n_pos_evidence"], de["n_neg_evidence"]),
            cov_rows=cov_rows,
            on_target=target.mask,
            calls=(call, call_dir),
            flag=flag,
        )


def score_direction(models: FittedModels, cell_line: str, pairs: pd.DataFrame, method: str) -> pd.DataFrame:
    """``p_up`` and ``call_dir`` of (perturbation, gene) pairs of one screened cell line, as
    :func:`score_pairs` gives them, without scoring their DE (the explorer's direction row)."""
    if not models.screened(cell_line):  # the no-screen answer is built from whole frames
        frame = next(iter(score_pairs(models, cell_line, pairs, [method])))
        return frame[["p_up", "call_dir"]].reset_index(drop=True)
    base, _, _, unknown_perturbation = _pair_setup(models, cell_line, pairs)
    prior, up_rate = _gene_priors(models, cell_line, base["gene"])
    unknown_gene = ~np.isfinite(prior)
    target = OnTarget.of(models, cell_line, base["perturbation"], base["gene"], ~unknown_gene)
    p_up, call_dir = direction_answer(
        models,
        (cell_line, method),
        base,
        (up_rate, target, unknown_gene | unknown_perturbation),
        score=_query_score(base),
        blend=True,
    )
    return pd.DataFrame({"p_up": p_up, "call_dir": call_dir})


def _query_score(base: dict[str, np.ndarray]) -> Callable[[Predictor, str], dict[str, Any]]:
    """``score(model, task)`` of the query pairs in ``base``."""
    q = pd.DataFrame(base)
    return lambda m, task: score_columns(m.score(q.assign(task=task)))


def _pair_setup(
    models: FittedModels, cell_line: str, pairs: pd.DataFrame
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """``(base, flag, cov_rows, unknown_perturbation)`` of query pairs of one cell line."""
    base = {
        "cell_line": np.full(len(pairs), cell_line, dtype=object),
        "perturbation": pairs["perturbation"].astype(str).to_numpy(dtype=object),
        "gene": pairs["gene"].astype(str).to_numpy(dtype=object),
    }
    perts = pd.Index(pd.unique(base["perturbation"]))
    pflag_p, cov_p = perturbation_flags(models, cell_line, list(perts))
    pi = positions(perts, base["perturbation"])
    flag = join_flags(pflag_p[pi], gene_flags(models, cell_line, list(base["gene"])))
    return base, flag, cov_p[pi], (pflag_p == "unknown_perturbation")[pi]


def score_pairs(
    models: FittedModels, cell_line: str, pairs: pd.DataFrame, methods: Sequence[str]
) -> Iterator[pd.DataFrame]:
    """Score (perturbation, gene) pairs of one cell line with every method: one frame per method with
    the columns of :data:`GRID_COLUMNS` (see :func:`predict_grid`)."""
    base, flag, cov_rows, unknown_perturbation = _pair_setup(models, cell_line, pairs)
    yield from _method_frames(
        models,
        cell_line,
        base,
        methods,
        flag=flag,
        cov_rows=cov_rows,
        score=_query_score(base),
        unknown_perturbation=unknown_perturbation,
    )


@keyword_options
def predict_grid(
    models: FittedModels,
    plan: GridPlan,
    *,
    methods: Sequence[str] | None = None,
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
    top: int | Ranking | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[pd.DataFrame]:
    """Score every perturbation × gene of a plan, chunk by chunk (memory bounded by ``pairs_per_chunk``).

    Args:
        models: Fitted models.
        plan: From :func:`grid_plan`.
        methods: Methods (default: :attr:`FittedModels.default_method`).
        pairs_per_chunk: Pairs scored at once (whole perturbations per chunk).
        top: Keep only the best rows: a :class:`Ranking`, or N = the N genes per perturbation with the
            highest ``effect``.
        progress: Called with ``(perturbations done, total)``.

    Yields:
        Frames with the columns of :data:`GRID_COLUMNS`: ``p_de`` = P(DE), ``p_up`` = P(up | DE) from the
        direction model (NaN without one), ``p_prior`` (the gene's DE rate under the training perturbations, on
        ``p_de``'s scale: the gene-frequency score), ``effect`` (shrunk log-odds lift of ``p_de`` over ``p_prior``), ``p_de_up`` / ``p_de_down``
        (P(DE and up / down)), ``effect_up`` / ``effect_down`` (their lifts over the gene's prior for the
        same event), ``excess_up`` / ``excess_down`` (``p_de_up - p_prior * up_rate``: how much more likely
        than usual the gene goes up / down; the rankings and floors of direction lists), evidence counts of the DE model, ``kg_coverage`` (share of KG relations that know the
        perturbation) and ``flag`` (``;``-joined: ``unknown_perturbation``, ``no_kg_information``,
        ``training_perturbation``, ``unknown_gene``; empty when nothing is off).
    """
    ranking = Ranking(top) if isinstance(top, int) else top
    methods = list(methods) if methods is not None else [models.default_method]
    check_ranking(models, ranking, methods)

    jobs = list(grid_chunks(plan, pairs_per_chunk))
    # two chunks at once (each scoring its DE then direction model) keep two cores busy; LLM methods pace themselves
    llm = any(m.uses_llm for (_, _, method), m in models.models.items() if method in methods)
    ahead = 2 if len(jobs) > 1 and effective_threads() > 1 and not llm else 1

    def work(job: tuple[int, int, int]) -> tuple[int, list[pd.DataFrame]]:
        unit, lo, hi = job
        line, perts, genes = plan.units[unit]
        with stage("tables"):  # what the inner stages (retrieval, features, trees) leave
            scored = score_chunk(
                models, line, perts[lo:hi], genes, methods, top=ranking, side_by_side=ahead == 1
            )
            return hi - lo, list(scored)

    def chunks() -> Iterator[pd.DataFrame]:
        total = plan.n_perturbations
        done = 0
        threads = effective_threads()
        with SingleThreadedBlas() if ahead > 1 else contextlib.nullcontext() as blas:
            for n, frames in in_order(jobs, work, ahead):
                yield from frames
                now = retune()  # the thread count follows the machine; a new count set every pool again
                if blas is not None and now not in (None, threads):
                    blas.again()
                threads = now or threads
                done += n
                if progress is not None:
                    progress(done, total)

    yield from merge_top(chunks(), ranking)


@keyword_options
def top_predictions(
    models: FittedModels,
    perturbations: Sequence[str] | None = None,
    *,
    genes: Sequence[str] | None = None,
    top: int = TOP,
    rank_by: str = DEFAULT_RANK_BY,
    per: str = "perturbation",
    cell_lines: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
    min_excess: float | None = MIN_EXCESS,
) -> pd.DataFrame:
    """The ranked answer to "which genes does p change" (``per="perturbation"``) or "which perturbations
    change g" (``per="gene"``), as one frame.

    Args:
        models: Fitted models.
        perturbations: Names (resolved with :func:`resolve_perturbations`: case, drug names); ``None`` =
            every candidate perturbation of each cell line.
        genes: Readout genes (resolved with :func:`resolve_genes`); ``None`` = the line's readout genes.
        top: Rows kept per perturbation (or per gene).
        rank_by: ``excess`` | ``effect`` | ``p_de`` | ``up`` | ``down`` (see :data:`RANK_BY`).
        per: ``perturbation`` or ``gene``.
        cell_lines: Cell lines (default: all in the model).
        methods: Methods (default: the model's CORE method).
        pairs_per_chunk: Pairs scored at once.
        min_excess: The floor of the lists (:class:`Ranking`; ``None``: every row).

    Returns:
        The kept rows with the columns of :data:`GRID_COLUMNS`, best first within each group; a group
        may hold fewer than ``top`` rows (or none) where few pass the floor.

    Raises:
        CorePerturbError: No requested perturbation (or gene) is known.
    """
    perts = None
    if perturbations is not None:
        perts = resolve_perturbations(models, list(perturbations)).require_some("perturbation").names
    gs = None
    if genes is not None:
        gs = resolve_genes(models, list(genes)).require_some("gene").names
    plan = grid_plan(models, perts, genes=gs, cell_lines=cell_lines)
    frames = list(
        predict_grid(
            models,
            plan,
            methods=methods,
            pairs_per_chunk=pairs_per_chunk,
            top=Ranking(top, rank_by, per, min_excess),
        )
    )
    if not frames:
        return pd.DataFrame(columns=list(GRID_COLUMNS))
    return rank_predictions(
        pd.concat(frames, ignore_index=True), top, rank_by=rank_by, per=per, min_excess=min_excess
    )


def grid_chunks(plan: GridPlan, pairs_per_chunk: int) -> Iterator[tuple[int, int, int]]:
    """``(unit, lo, hi)``: whole perturbations ``lo:hi`` of ``plan.units[unit]``, about ``pairs_per_chunk``
    pairs and at most :data:`MAX_PERTURBATIONS_PER_CHUNK` perturbations each."""
    for u, (_, perts, genes) in enumerate(plan.units):
        step = max(1, min(pairs_per_chunk // max(len(genes), 1), MAX_PERTURBATIONS_PER_CHUNK))
        for lo in range(0, len(perts), step):
            yield u, lo, min(lo + step, len(perts))


@keyword_options
def score_chunk(
    models: FittedModels,
    cell_line: str,
    perturbations: Sequence[str],
    genes: Sequence[str],
    methods: Sequence[str],
    *,
    top: int | Ranking | None = None,
    side_by_side: bool = True,
) -> Iterator[pd.DataFrame]:
    """Every ``perturbations × genes`` pair of one cell line, one frame per method (see :func:`score_pairs`);
    with ``top``, the best rows of the chunk by :func:`rank_predictions` (per gene, a superset of what the
    whole grid keeps: :func:`merge_top` makes the final cut). ``side_by_side``: score the DE and direction
    models in two threads (off where chunks are already scored side by side)."""
    ranking = Ranking(top) if isinstance(top, int) else top
    perts = list(dict.fromkeys(map(str, perturbations)))
    genes = list(map(str, genes))
    pflag, cov = perturbation_flags(models, cell_line, perts)
    gflag = gene_flags(models, cell_line, genes)
    n_p, n_g = len(perts), len(genes)
    base = {
        "cell_line": np.full(n_p * n_g, cell_line, dtype=object),
        "perturbation": np.repeat(np.asarray(perts, dtype=object), n_g),
        "gene": np.tile(np.asarray(genes, dtype=object), n_p),
    }
    # the few distinct (perturbation flag, gene flag) pairs are joined once, then spread by code
    pu, pinv = np.unique(pflag.astype(str), return_inverse=True)
    gu, ginv = np.unique(gflag.astype(str), return_inverse=True)
    table = join_flags(np.repeat(pu.astype(object), len(gu)), np.tile(gu.astype(object), len(pu)))
    flag = table[np.repeat(pinv * len(gu), n_g) + np.tile(ginv, n_p)]
    frames = _method_frames(
        models,
        cell_line,
        base,
        methods,
        flag=flag,
        cov_rows=np.repeat(cov, n_g),
        score=lambda m, task: _grid_scores(m, perts, genes, task),
        unknown_perturbation=np.repeat(pflag == "unknown_perturbation", n_g),
        side_by_side=side_by_side,
    )
    for out in frames:
        if ranking is not None:
            out = rank_predictions(
                out, ranking.top, rank_by=ranking.rank_by, per=ranking.per, min_excess=ranking.min_excess
            )
        yield out
