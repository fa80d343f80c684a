"""``predict`` (score query tables) and ``evaluate_predictions`` (metrics of labelled predictions)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from coreperturb._deprecation import keyword_options, renamed_options
from coreperturb._threads import retune
from coreperturb.errors import CorePerturbError
from coreperturb.evaluation._calls import call_metrics
from coreperturb.evaluation._genome import genome_metrics
from coreperturb.evaluation._metrics import evaluate
from coreperturb.evidence._contrastive import retrieve_evidence
from coreperturb.evidence._pool import ObservationPool
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.predictors._base import Predictor
from coreperturb.predictors._conformal import CALL_LABELS
from coreperturb.predictors._effect import effect_score, gene_prior
from coreperturb.stages._blend import blended, query_scorer
from coreperturb.stages._fitted import FittedModels
from coreperturb.stages._on_target import OnTarget
from coreperturb.stages._priors import line_priors
from coreperturb.stages._ranking import DEFAULT_RANK_BY, RANK_BY
from coreperturb.stages._unscreened import unscreened_unit

if TYPE_CHECKING:
    from coreperturb.llm._runner import RunStats

log = logging.getLogger(__name__)


def _unit_queries(models: FittedModels, queries: pd.DataFrame) -> pd.DataFrame:
    q = queries.reset_index(drop=True)
    for col in ("perturbation", "gene"):
        if col not in q.columns:
            raise CorePerturbError(f"queries need a {col!r} column; found {list(map(str, q.columns))}")
    if "cell_line" not in q.columns:
        if len(models.cell_lines) != 1:
            raise CorePerturbError(
                f"queries need a 'cell_line' column: the model holds {', '.join(models.cell_lines)}"
            )
        q["cell_line"] = models.cell_lines[0]
    if "task" not in q.columns:
        q["task"] = "de"
    return q.astype({"cell_line": str, "task": str, "perturbation": str, "gene": str})


def _score_unit(model: Predictor, q: pd.DataFrame) -> dict[str, Any]:
    """Scores (and what else the method reports) of one unit's queries."""
    return score_columns(model.score(q))


def score_columns(scored: pd.DataFrame) -> dict[str, Any]:
    """:meth:`Predictor.score` output as arrays, with ``from_cache`` / ``error`` filled for every method."""
    n = len(scored)
    out: dict[str, Any] = {"from_cache": np.zeros(n, dtype=bool), "error": np.full(n, None, dtype=object)}
    out["score"] = scored["score"].to_numpy(dtype=np.float64)
    for col in ("n_pos_evidence", "n_neg_evidence", "score_method", "rationale", "error"):
        if col in scored.columns:
            out[col] = scored[col].to_numpy()
    if "from_cache" in scored.columns:
        out["from_cache"] = scored["from_cache"].to_numpy(dtype=bool)
    if "p_yes" in scored.columns:
        out["p_yes"] = scored["p_yes"].to_numpy(dtype=np.float64)
    return out


def evidence_counts(kg: KnowledgeGraph, train: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """Positive / negative evidence counts per query (default CORE retrieval over the training rows)."""
    ev, _ = retrieve_evidence(kg, queries, ObservationPool.from_frame(train))
    return ev.summary()[["n_pos_evidence", "n_neg_evidence"]]


@renamed_options(progress="on_step")
@keyword_options
def predict(
    models: FittedModels,
    queries: pd.DataFrame,
    *,
    methods: Sequence[str] | None = None,
    on_step: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Score (perturbation, gene) queries with fitted models.

    Args:
        models: From :func:`fit` or :func:`coreperturb.load_model`.
        queries: Rows with ``perturbation`` and ``gene``; ``cell_line`` (optional when the model holds one
            cell line) and ``task`` (default ``de``). Any other columns (``label``, ``split``) are kept.
        methods: Methods to score with (default: every fitted method).
        on_step: Called with a short message before each unit is scored (was ``progress``).

    Returns:
        One row per (query, method), grouped by (cell line, task) then method, queries in input order
        within a group: the query columns, ``method``, ``score`` (P(positive) on the genome scale where the
        design allows it, :meth:`FittedModels.scale_name`; NaN where an LLM call failed), ``p_prior`` (the
        gene's rate in the unit's training rows, the gene-frequency score, on the same scale; NaN for a gene
        never observed there), ``score_sample`` / ``p_prior_sample`` (the same on the scale of the training
        table's asked pairs: PerturbQA's official metrics read these), ``effect`` (the shrunk lift of ``score`` over
        ``p_prior``, :func:`coreperturb.predictors._effect.effect_score`), ``n_pos_evidence`` /
        ``n_neg_evidence``, ``from_cache``, ``error``, and for LLM methods
        ``p_yes`` / ``score_method`` (raw answer probability and how it was read) and ``rationale`` (the
        model's reasoning with ``reasoning_tokens``; empty otherwise).
    """
    return _predict(models, queries, methods=methods, say=on_step or (lambda msg: log.info(msg)))


def _unblended(models: FittedModels, queries: pd.DataFrame, *, methods: Sequence[str]) -> pd.DataFrame:
    """Each line's own answers (not blended with the other lines'): what a line with no screen averages."""
    return _predict(models, queries, methods=methods, say=lambda msg: log.info(msg), blend=False)


def _predict(
    models: FittedModels,
    queries: pd.DataFrame,
    *,
    methods: Sequence[str] | None,
    say: Callable[[str], None],
    blend: bool = True,
) -> pd.DataFrame:
    q = _unit_queries(models, queries)
    methods = list(methods) if methods is not None else models.methods
    parts: list[pd.DataFrame] = []
    groups: dict[Any, Any] = q.groupby(["cell_line", "task"], sort=True).indices
    for key, idx in groups.items():
        line, task = str(key[0]), str(key[1])
        unit = q.iloc[np.sort(idx)].reset_index(drop=True)
        if not models.screened(line):
            models.require_cell_lines([line], unscreened=True)  # says so once
            parts.extend(unscreened_unit(models, unit, line, task, methods, predict=_unblended))
            continue
        scored: list[tuple[str, dict[str, Any]]] = []
        counts: pd.DataFrame | None = None
        for method in methods:
            retune()
            say(f"{line}/{task}: scoring {len(unit)} queries with {method}")
            res = _score_unit(models.model(str(line), str(task), method), unit)
            if blend:  # with the other lines' answers (stages._blend)
                res["score"] = blended(
                    models, (line, task, method), res["score"], pairs=unit, score_with=query_scorer(unit)
                )
            if "n_pos_evidence" in res:
                counts = pd.DataFrame(
                    {"n_pos_evidence": res["n_pos_evidence"], "n_neg_evidence": res["n_neg_evidence"]}
                )
            scored.append((method, res))
        train_rows = models.training_rows(str(line), str(task))
        if counts is None:
            counts = evidence_counts(models.kg, train_rows, unit)
        prior_sample = gene_prior(train_rows, unit["gene"].to_numpy())
        prior_scale = models.prior_scale(line) if task == "de" else None
        prior = prior_scale(prior_sample) if prior_scale is not None else prior_sample
        n_ev = counts["n_pos_evidence"].to_numpy() + counts["n_neg_evidence"].to_numpy()
        target = OnTarget.of(
            models, line, unit["perturbation"].to_numpy(), unit["gene"].to_numpy(), np.isfinite(prior)
        )
        for method, res in scored:
            score_sample = np.asarray(res["score"], dtype=np.float64).copy()
            scale = models.scale(line, method) if task == "de" else None
            score = scale(score_sample) if scale is not None else score_sample.copy()
            target.apply(task, score)
            target.apply(task, score_sample)
            call = models.calls(line, task, method, score, prior=prior, genes=unit["gene"].to_numpy())
            target.apply(task, score, call)  # the modality's rule decides, not the evidence
            part = unit.assign(
                method=method,
                score=score,
                p_prior=prior,
                excess=score - prior,
                effect=effect_score(score, prior, n_ev),
                score_sample=score_sample,
                p_prior_sample=prior_sample,
                n_pos_evidence=counts["n_pos_evidence"].to_numpy(),
                n_neg_evidence=counts["n_neg_evidence"].to_numpy(),
                from_cache=res["from_cache"],
                error=res["error"],
                on_target=target.mask,
                call=call,
            )
            if "p_yes" in res:
                part["p_yes"] = res["p_yes"]
                part["score_method"] = res["score_method"]
                part["rationale"] = res["rationale"]
            parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    if "flag" in out.columns:  # rows of a line with no screen say so; the others have nothing to say
        out["flag"] = out["flag"].fillna("")
    return out


def failed_methods(predictions: pd.DataFrame) -> list[str]:
    """One line per (cell line, task, method) whose every row failed (no score), naming the first error."""
    out = []
    keys = ["cell_line", "task", "method"]
    for key, grp in predictions.groupby(keys, sort=False, observed=True):
        if len(grp) and grp["score"].isna().all():
            errs = grp["error"].dropna() if "error" in grp.columns else pd.Series(dtype=object)
            why = str(errs.iloc[0]) if len(errs) else "no score"
            out.append(f"{'/'.join(map(str, key))} failed on all {len(grp)} queries: {why}")
    return out


@keyword_options
def evaluate_predictions(
    predictions: pd.DataFrame,
    thresholds: dict[tuple[str, str, str], float] | None = None,
    *,
    n_bootstrap: int = 0,
    seed: int = 0,
    kg: KnowledgeGraph | None = None,
    models: FittedModels | None = None,
) -> pd.DataFrame:
    """Metrics of labelled predictions, per (cell line, task, method).

    Rows without a score (a failed LLM call) are left out; ``n_scored`` and ``n_errors`` say how many rows
    counted and how many failed.

    Args:
        predictions: From :func:`predict`, with a ``label`` column.
        thresholds: Decision threshold per (cell line, task, method) (default 0.5), e.g.
            :attr:`FittedModels.thresholds`.
        n_bootstrap: Bootstrap resamples over perturbations for 95% CIs.
        seed: Bootstrap seed.
        kg: If given, also count the test perturbations without KG information.
        models: The fitted models (their sampling design and readout genes): adds the metrics over the
            genome (:func:`coreperturb.evaluation._genome.genome_metrics`) of the DE task.

    The table-scale metrics (per-gene AUROC, calibration, excess DE@k, coverage among the asked pairs) read
    ``score_sample`` / ``p_prior_sample`` where the predictions have them; per-gene AUROC is the same on both
    scales (the genome map is increasing).

    Returns:
        Tidy frame: cell_line, task, method, metric, value, ci_low, ci_high.
    """
    if "label" not in predictions.columns:
        raise CorePerturbError("evaluate needs labelled predictions (a 'label' column)")
    thresholds = thresholds or {}
    rows: list[pd.DataFrame] = []
    keys = ["cell_line", "task", "method"]
    for key, grp in predictions.groupby(keys, sort=False, observed=True):
        line, task, method = (str(k) for k in key)
        sample_col = "score_sample" if "score_sample" in grp.columns else "score"
        score = grp[sample_col].to_numpy(dtype=np.float64)
        ok = np.isfinite(score)
        g = grp.loc[ok]
        prior_col = "p_prior_sample" if "p_prior_sample" in g.columns else "p_prior"
        # ranking metrics read "DE" hits: the direction task (up among DE pairs) has none
        rank_col = RANK_BY[DEFAULT_RANK_BY]
        has_effect = task == "de" and "p_prior" in g.columns and rank_col in g.columns
        m = evaluate(
            g["label"].to_numpy(),
            score[ok],
            g["gene"].to_numpy(),
            g["perturbation"].to_numpy(),
            threshold=thresholds.get((line, task, method), 0.5),
            n_bootstrap=n_bootstrap,
            seed=seed,
            prior=g[prior_col].to_numpy(dtype=np.float64) if has_effect else None,
            # on the table's scale: the table's ranking (p - prior among the asked pairs), as before the
            # genome scale; the genome lists' own excess is measured by benchmarks/genome_scale.py
            effect=(
                (g[sample_col] - g[prior_col]).to_numpy(dtype=np.float64)
                if has_effect and DEFAULT_RANK_BY == "excess"
                else g[rank_col].to_numpy(dtype=np.float64)
                if has_effect
                else None
            ),
        )
        perts = sorted(pd.unique(grp["perturbation"].astype(str)))
        extra = {
            "n_test_perturbations": float(len(perts)),
            **(
                {"n_test_perturbations_without_kg": float((~kg.has_info(perts)).sum())}
                if kg is not None
                else {}
            ),
            "n_scored": float(ok.sum()),
            "n_errors": float((~ok).sum()),
        }
        if "call" in g.columns and "p_prior" in g.columns:
            extra.update(
                call_metrics(
                    g["label"].to_numpy(), g["call"].to_numpy(), g["p_prior"].to_numpy(), CALL_LABELS[task][0]
                )
            )
        design = models.design_of(line) if models is not None else None
        if models is not None and task == "de" and design is not None and line in models.cell_lines:
            extra.update(
                genome_metrics(
                    g["label"].to_numpy(),
                    g["score"].to_numpy(dtype=np.float64),
                    g["perturbation"].to_numpy(),
                    design=design,
                    universe=len(models.readout_genes(line, "de")),
                    calls=g["call"].to_numpy() if "call" in g.columns else None,
                    prior=g["p_prior"].to_numpy(dtype=np.float64) if "p_prior" in g.columns else None,
                    genes=g["gene"].to_numpy(),
                    gene_priors=line_priors(models, line),
                )
            )
        m = pd.concat([m, pd.DataFrame({"metric": list(extra), "value": list(extra.values())})])
        m.insert(0, "method", method)
        m.insert(0, "task", task)
        m.insert(0, "cell_line", line)
        rows.append(m)
    return pd.concat(rows, ignore_index=True)


def llm_stats(models: FittedModels) -> dict[str, RunStats]:
    """Call / cache / token counters of the LLM methods, summed over cell lines and tasks."""
    from coreperturb.llm._runner import RunStats

    out: dict[str, RunStats] = {}
    for (_, _, method), model in models.models.items():
        stats = model.run_stats()
        if stats is not None:
            out.setdefault(method, RunStats()).add(stats)
    return out
