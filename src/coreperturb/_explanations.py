"""Why a model scores a (perturbation, gene) pair as it does: :func:`explain` → :class:`Explanation`.

:func:`explain` is what ``coreperturb explain`` calls: it takes a fitted model (or fits CORE-Voting on the
data named by a :class:`~coreperturb.BenchmarkConfig`), resolves the names, refuses a pair for which
CORE has no evidence at all, and returns an :class:`Explanation` (:func:`explain_voting` does the explaining
itself). :mod:`coreperturb._llm_explanations` shows what an LLM method reads and answers.

An explanation holds the prediction beside the gene's prior and the effect (the lift over that prior), the
contrastive evidence (related training perturbations observed on the gene, each with the KG relation that
links it most strongly to the perturbation and that link in words) and, for every score, what else it
rests on: the prior, the gene's module of co-responding genes, direct perturbation–gene links and, for
transfer models, the perturbation's behaviour in other cell lines. A pair without related evidence says
so instead of showing a bare number.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from coreperturb import _defaults as d
from coreperturb._config import BenchmarkConfig, DataConfig, FitConfig
from coreperturb._deprecation import keyword_options
from coreperturb._util import positions
from coreperturb.errors import CorePerturbError
from coreperturb.evidence._contrastive import strongest_relations
from coreperturb.evidence._words import DIR_DRIVERS, DRIVERS, drug_words
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.predictors._base import Predictor, make_predictor
from coreperturb.predictors._conformal import CALL_LABELS
from coreperturb.predictors._core_voting import CoreVoting
from coreperturb.predictors._effect import GENE_PRIOR_STRENGTH, effect_score
from coreperturb.stages import FittedModels, resolve_genes, resolve_perturbations
from coreperturb.stages._blend import blend_of, query_scorer, source_answers
from coreperturb.stages._fitted import context_rows
from coreperturb.stages._names import warn_names
from coreperturb.stages._on_target import MIN_ON_TARGET_ROWS, OnTarget, on_target_rule
from coreperturb.stages._unscreened import lines_mean


@dataclass(frozen=True)
class Explanation:
    """The evidence behind one prediction.

    Attributes:
        perturbation, gene, cell_line, task, method: The query and the model.
        p: The model's calibrated P(positive).
        p_prior: The gene's prior (its training rate: the gene-frequency score).
        effect: The effect score (:func:`coreperturb.predictors._effect.effect_score`).
        n_pos, n_neg: Related training perturbations that made the gene positive / left it negative.
        kg_info: Whether the KG knows the perturbation.
        evidence: One row per related perturbation (``evidence`` positive / negative,
            ``related_perturbation``, ``similarity`` (combined), ``strongest_relation`` (the relation with the
            highest similarity), ``link`` (the shared KG features in words), and ``sim_<relation>`` columns).
        drivers: What the score rests on besides the listed evidence (``feature``, ``meaning``, ``value``).
        context: For transfer models, ``(contexts, similar)`` of
            :meth:`coreperturb.evidence.ContextEvidence.for_query`.
        call: The conformal call at the model's confidence (``DE`` / ``not DE`` / ``uncertain``, ``DE`` also
            where P(DE) reaches the confidence; ``up`` / ``down`` / ``uncertain``); empty without calibration.
        rule: For an on-target pair (the perturbation's own target), what the modality's rule says; the rule,
            not the evidence, decides the prediction then. Empty otherwise.
        scale: ``genome`` (P(DE) and the prior: the chance over the line's readout genes) or ``table`` (among
            the table's asked pairs: older models); empty for the direction task and without a fitted model.
        blend: How ``p`` mixes the line's own answer with the other lines' (:mod:`coreperturb.stages._blend`),
            in words; empty where the own answer stands alone.
    """

    perturbation: str
    gene: str
    cell_line: str
    task: str
    method: str
    p: float
    p_prior: float
    effect: float
    n_pos: int
    n_neg: int
    kg_info: bool
    evidence: pd.DataFrame
    drivers: pd.DataFrame
    context: tuple[pd.DataFrame, pd.DataFrame] | None = None
    call: str = ""
    rule: str = ""
    scale: str = ""
    blend: str = ""

    @property
    def has_evidence(self) -> bool:
        """Whether any related training perturbation was observed on the gene."""
        return self.n_pos + self.n_neg > 0

    def compact_evidence(self) -> pd.DataFrame:
        """The evidence without the per-relation similarity columns (fits a terminal)."""
        return self.evidence[[c for c in self.evidence.columns if not c.startswith("sim_")]]

    def summary(self) -> str:
        """One line: the prediction, the prior, the effect and the evidence counts."""
        what, pos, neg = (
            ("P(DE)", "DE", "unchanged") if self.task == "de" else ("P(up | DE)", "go up", "go down")
        )
        if self.scale:
            what += " over the genome" if self.scale == "genome" else " among the table's asked pairs"
        call = f"; call: {self.call}" if self.call else ""
        if self.rule:
            return f"{what} = {self.p:.3f}{call}; on target: the modality's rule decides this pair"
        return (
            f"{what} = {self.p:.3f}{call}; gene prior = {self.p_prior:.3f}; excess = {self.p - self.p_prior:+.3f}; "
            f"evidence: {self.n_pos} related perturbations made the gene {pos}, {self.n_neg} left it {neg}"
            if self.task == "de"
            else f"{what} = {self.p:.3f}{call}; the gene's up-rate = {self.p_prior:.3f}; evidence: {self.n_pos} "
            f"related perturbations made it {pos}, {self.n_neg} {neg}"
        )

    def other_lines(self) -> list[str]:
        """The perturbation in each other cell line whose screen the model read, one sentence each (e.g.
        ``CAPZB in rpe1: CFL1 DE``); empty for a model of one line's screen."""
        if self.context is None:
            return []
        words = {"de": ("DE", "not DE"), "dir": ("up", "down")}[self.task]
        out = []
        for row in self.context[0].itertuples(index=False):
            head = f"{self.perturbation} in {row.cell_line}: "
            if not row.perturbation_observed:
                out.append(head + "not screened there")
                continue
            pair = str(row.pair)
            said = words[0] if pair == "positive" else words[1] if pair == "negative" else "not measured"
            out.append(
                f"{head}{self.gene} {said} ({self.perturbation} made {row.perturbation_rate:.0%} of its "
                f"measured genes {words[0]} there; the line's rate {row.context_rate:.0%})"
            )
        return out

    def rests_on(self) -> str:
        """What the score rests on when there is no related evidence (empty when there is)."""
        if self.has_evidence:
            return ""
        parts = ["the gene's prior"]
        if self.context is not None:
            parts.append("the perturbation's behaviour in the other cell lines")
        parts.append("the gene's module of co-responding genes and direct perturbation-gene links")
        if not self.kg_info:
            return "no KG information for the perturbation: the score is the gene's prior and nothing else"
        return (
            "no related training perturbation was observed on this gene: the score rests on "
            + ", ".join(parts)
            + " (see the table below); its effect is 0"
        )


@keyword_options
def explain_voting(
    model: CoreVoting,
    kg: KnowledgeGraph,
    perturbation: str,
    gene: str,
    *,
    cell_line: str,
    task: str,
    top: int = d.EVIDENCE_ROWS,
) -> Explanation:
    """Explain one (perturbation, gene) prediction of a fitted CORE-Voting model.

    Args:
        model: A fitted :class:`~coreperturb.predictors.CoreVoting` (or transfer) model.
        kg: Its knowledge graph.
        perturbation: Canonical perturbation name.
        gene: Canonical readout gene.
        cell_line: The model's cell line (recorded in the explanation).
        task: The model's task.
        top: Evidence rows per side.
    """
    q = pd.DataFrame({"perturbation": [perturbation], "gene": [gene]})
    ev, sims = model.evidence(q)
    table = ev.for_query(0, kg=kg, sims=sims, top=top)
    table.insert(3, "strongest_relation", strongest_relations(table))  # the relation the first link shows
    table = table.rename(columns={"paths": "link"})
    table = drug_words(kg, perturbation, table)
    p, counts, feats = model.predict_with_features(q, sims=sims)  # the score and its drivers, same retrieval
    n_pos = int(counts["n_pos_evidence"].to_numpy()[0])
    n_neg = int(counts["n_neg_evidence"].to_numpy()[0])
    gi = int(positions(model.pool_.genes, [gene])[0])
    prior = float(model.pool_.gene_rate(GENE_PRIOR_STRENGTH)[gi]) if gi >= 0 else float("nan")
    effect = float(effect_score(p, np.array([prior]), np.array([n_pos + n_neg]))[0])
    drivers = pd.DataFrame(
        [
            {
                "feature": f,
                "meaning": (DIR_DRIVERS if task == "dir" else {}).get(f, DRIVERS[f]),
                "value": float(feats[f].to_numpy()[0]),
            }
            for f in DRIVERS
            if f in feats.columns
        ]
    )
    context = model.context_evidence(perturbation, gene, top=top) if model.context_ is not None else None
    return Explanation(
        perturbation=perturbation,
        gene=gene,
        cell_line=cell_line,
        task=task,
        method=model.name,
        p=float(p[0]),
        p_prior=prior,
        effect=effect,
        n_pos=n_pos,
        n_neg=n_neg,
        kg_info=bool(kg.has_info([perturbation])[0]),
        evidence=table,
        drivers=drivers,
        context=context,
    )


def resolve_pair(models: FittedModels, perturbation: str, gene: str) -> tuple[str, str]:
    """Canonical names of one pair; a renamed name is warned about, an unknown one stops with suggestions.

    Raises:
        CorePerturbError: The perturbation or the gene is unknown.
    """
    p = resolve_perturbations(models, [perturbation])
    g = resolve_genes(models, [gene])
    for res, what in ((p, "perturbation"), (g, "gene")):
        if res.unknown:
            raise CorePerturbError(res.unknown_message(res.unknown[0], what))
        warn_names(res, what)
    return p.names[0], g.names[0]


@keyword_options
def check_evidence_exists(
    model: CoreVoting, kg: KnowledgeGraph, perturbation: str, gene: str, *, line: str, task: str
) -> None:
    """Refuse a pair for which CORE has no evidence at all (the answer would be the gene's prior).

    Raises:
        CorePerturbError: The gene was never a readout, or the perturbation has neither KG information nor
            rows in another cell line.
    """
    if gene not in model.pool_.genes:
        raise CorePerturbError(
            f"gene {gene!r} was never a readout in the {line}/{task} training rows; CORE has no outcomes on it"
        )
    context = model.context_
    in_context = context is not None and any(
        perturbation in pool.perturbations for pool in context.pools.values()
    )
    if not kg.has_info([perturbation])[0] and not in_context:
        raise CorePerturbError(
            f"perturbation {perturbation!r} has no KG information (no annotated target) and was not measured in "
            f"another cell line: CORE has no evidence for it, only {gene}'s base rate"
        )


def model_for(models: FittedModels, line: str, task: str, methods: tuple[str, ...], what: str) -> Predictor:
    for method in methods:
        found = models.models.get((line, task, method))
        if found is not None:
            return found
    have = ", ".join("/".join(k) for k in models.models)
    raise CorePerturbError(f"explain needs a {what} model for {line}/{task}; the model holds {have}")


def fit_here(
    config: BenchmarkConfig,
    cell_line: str | None,
    task: str,
    perturbation: str,
    gene: str,
    *,
    all_lines: bool,
) -> tuple[Any, KnowledgeGraph, str, str, str, pd.DataFrame]:
    """No fitted model: load the data and KG of ``config`` (every line with ``all_lines``), resolve the names
    and return ``(table, kg, line, perturbation, gene, training rows without the perturbation)``."""
    from coreperturb._pipeline import load_inputs

    lines = (cell_line,) if cell_line and not all_lines else None
    data = DataConfig(data_dir=config.data.data_dir, cell_lines=lines, tasks=(task,))
    config = BenchmarkConfig(data, config.kg, config.fit, config.evaluate)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = load_inputs(config, Path(tmp))
    table, kg = inputs.table, inputs.kg
    line = cell_line or table.cell_lines[0]
    if line not in table.cell_lines:
        raise CorePerturbError(f"cell line {line!r} not found; available: {', '.join(table.cell_lines)}")
    frame = table.frame.astype({"cell_line": str, "task": str})
    probe = FittedModels(kg, {}, frame.loc[frame["split"] == "train"], FitConfig())
    perturbation, gene = resolve_pair(probe, perturbation, gene)
    train = table.subset(line, task).split("train")
    return table, kg, line, perturbation, gene, train[train["perturbation"] != perturbation]


@keyword_options
def explain(
    perturbation: str,
    gene: str,
    models: FittedModels | None = None,
    *,
    config: BenchmarkConfig | None = None,
    cell_line: str | None = None,
    task: str = "de",
    top: int = d.EVIDENCE_ROWS,
    transfer: bool = False,
) -> Explanation:
    """Explain one (perturbation, gene) with CORE-Voting's evidence.

    Args:
        perturbation: A perturbation name (case, drug names and DrugBank ids are resolved).
        gene: A readout gene.
        models: A fitted model (e.g. :func:`coreperturb.load_model`); its ``core_voting`` (with
            ``transfer``: ``core_voting_transfer``, which it also falls back to) is explained.
        config: Without ``models``: the data and KG to fit CORE-Voting on (the cell line's training split,
            without the perturbation itself); default: the synthetic benchmark.
        cell_line: The cell line (default: the first).
        task: ``de`` or ``dir``.
        top: Evidence rows per side.
        transfer: Explain ``core_voting_transfer``: other cell lines' training rows as context.

    Raises:
        CorePerturbError: Unknown names, no suitable model, or no evidence at all for the pair.
    """
    if models is not None:
        line = models.require_cell_lines([cell_line or models.cell_lines[0]])[0]  # a screened line's evidence
        order = ("core_voting_transfer",) if transfer else ("core_voting", "core_voting_transfer")
        model = model_for(models, line, task, order, "core_voting or core_voting_transfer")
        if not model.shows_evidence:
            raise CorePerturbError(f"{model.name} retrieves no evidence to explain")
        kg = models.kg
        perturbation, gene = resolve_pair(models, perturbation, gene)
    else:
        table, kg, line, perturbation, gene, train = fit_here(
            config or BenchmarkConfig(), cell_line, task, perturbation, gene, all_lines=transfer
        )
        seed = (config or BenchmarkConfig()).fit.seed
        if transfer:
            model = make_predictor("core_voting_transfer", kg, seed=seed).fit(
                train, context=context_rows(table.frame, line, task)
            )
        else:
            model = make_predictor("core_voting", kg, seed=seed).fit(train)
    voting = cast(CoreVoting, model)  # shows_evidence: the CORE-Voting family
    return explain_checked(voting, kg, perturbation, gene, line=line, task=task, top=top, models=models)


@keyword_options
def explain_checked(
    model: CoreVoting,
    kg: KnowledgeGraph,
    perturbation: str,
    gene: str,
    *,
    line: str,
    task: str,
    top: int = d.EVIDENCE_ROWS,
    models: FittedModels | None = None,
) -> Explanation:
    """The one path of :func:`explain` and the explorer once the names are resolved: an on-target pair is
    decided by the modality's rule, any other pair must have evidence (:func:`check_evidence_exists`); then
    :func:`explain_voting`, with the conformal call of ``models`` where they are given.

    Raises:
        CorePerturbError: The pair has no evidence at all.
    """
    rule = on_target_rule(models, line) if models is not None and perturbation == gene else None
    if rule is None:
        check_evidence_exists(model, kg, perturbation, gene, line=line, task=task)
    ex = explain_voting(model, kg, perturbation, gene, cell_line=line, task=task, top=top)
    return with_call(ex, models) if models is not None else ex


def _blended(ex: Explanation, models: FittedModels) -> Explanation:
    """``ex`` with its own answer blended with the other lines' as ``predict`` blends it (stages._blend)."""
    b = blend_of(models, ex.cell_line, ex.task, ex.method)
    if b is None:
        return ex
    q = pd.DataFrame({"perturbation": [ex.perturbation], "gene": [ex.gene]})
    key = (ex.cell_line, ex.task, ex.method)
    per_source = source_answers(models, key, b.sources, pairs=q, score_with=query_scorer(q))
    others = lines_mean([a for a, _ in per_source], models.config.other_lines_mean)
    if not np.isfinite(others[0]):
        return ex
    p = float(b.mix(np.array([ex.p]), others)[0])
    pooled = "" if b.pool == "probabilities" else "the log-odds of "
    read = models.config.measured_pairs != "labels"  # a measurement read as a chance, not as its label
    words = (
        f"every screen counts: on the table's scale, {pooled}this line's own answer {ex.p:.3f} x "
        f"{b.own_weight:.2f} ({b.own_perturbations} own perturbations) + {pooled}the other lines' answer"
        f"{' (their log-odds averaged)' if models.config.other_lines_mean == 'log_odds' else ''} "
        f"{others[0]:.3f} x {1 - b.own_weight:.2f} ({'; '.join(_source_words(ex, b.sources, per_source, read=read))})"
    )
    effect = float(effect_score(np.array([p]), np.array([ex.p_prior]), np.array([ex.n_pos + ex.n_neg]))[0])
    return dataclasses.replace(ex, p=p, effect=effect, blend=words)


def _source_words(
    ex: Explanation, sources: tuple[str, ...], answers: list[tuple[np.ndarray, np.ndarray]], *, read: bool
) -> list[str]:
    """Each other line's part of the blend: ``p in rpe1: g DE (measured)`` (``read``: with the chance it was
    read as here), its model's answer, or that it does not read out the gene."""
    labels = CALL_LABELS[ex.task]
    words = []
    for source, (answer, label) in zip(sources, answers, strict=True):
        if np.isfinite(label[0]):
            said = labels[0] if label[0] >= 0.5 else labels[1]
            as_read = f", read as {answer[0]:.3f} here" if read else ""
            words.append(f"{ex.perturbation} in {source}: {ex.gene} {said} (measured{as_read})")
        elif np.isfinite(answer[0]):
            words.append(f"{source}: not measured there, its model {answer[0]:.3f}")
        else:
            words.append(f"{source}: does not read out {ex.gene}")
    return words


def with_call(ex: Explanation, models: FittedModels) -> Explanation:
    """``ex`` with its conformal call, and for an on-target pair the modality's rule in place of the
    evidence-based score (:func:`coreperturb.stages.on_target_rule`)."""
    target = OnTarget.of(
        models, ex.cell_line, np.array([ex.perturbation]), np.array([ex.gene]), np.array([True])
    )
    if target.any:
        assert target.rule is not None
        text = (
            f"{ex.perturbation} is the perturbation's own target: under {models.config.modality}, P(DE) "
            f"{target.rule[0]:.2f} and P(up) {target.rule[1]:.2f}, called {target.call('de')} / "
            f"{target.call('dir')} (from the line's own self pairs where its training rows hold at least "
            f"{MIN_ON_TARGET_ROWS}, else the modality's rule); the rule decides this pair, not the evidence"
        )
        return dataclasses.replace(
            ex, p=target.score(ex.task), effect=float("nan"), rule=text, call=target.call(ex.task)
        )
    ex = _blended(ex, models)
    if ex.task == "de":  # the same scale as predict's p_de and p_prior (the genome, where the design allows)
        scale, prior_scale = models.scale(ex.cell_line, ex.method), models.prior_scale(ex.cell_line)
        if scale is not None and prior_scale is not None:
            p, prior = scale(np.array([ex.p])), prior_scale(np.array([ex.p_prior]))
            effect = float(effect_score(p, prior, np.array([ex.n_pos + ex.n_neg]))[0])
            ex = dataclasses.replace(ex, p=float(p[0]), p_prior=float(prior[0]), effect=effect)
        ex = dataclasses.replace(ex, scale=models.scale_name(ex.cell_line))
    call = models.calls(
        ex.cell_line,
        ex.task,
        ex.method,
        np.array([ex.p]),
        prior=np.array([ex.p_prior]),
        genes=np.array([ex.gene]),
    )
    return dataclasses.replace(ex, call=str(call[0]))


__all__ = [
    "DRIVERS",
    "Explanation",
    "check_evidence_exists",
    "explain",
    "explain_checked",
    "explain_voting",
    "resolve_pair",
]
