"""Why CORE-Voting scores a (perturbation, gene) pair as it does: :func:`explain_pair` → :class:`Explanation`.

An explanation holds the prediction beside the gene's prior and the effect (the lift over that prior), the
contrastive evidence (related training perturbations observed on the gene, each with the KG relation that
links it most strongly to the perturbation and that link in words) and, for every score, what else it
rests on: the prior, the gene's module of co-responding genes, direct perturbation–gene links and, for
transfer models, the perturbation's behaviour in other cell lines. A pair without related evidence says
so instead of showing a bare number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coreperturb._util import positions
from coreperturb.graph.kg import KnowledgeGraph
from coreperturb.predictors.core_voting import CoreVoting
from coreperturb.predictors.effect import GENE_PRIOR_STRENGTH, effect_score

DRIVERS: dict[str, str] = {
    "base": "gene prior: log-odds of its training DE rate",
    "vote_combined": "related perturbations' vote on this gene (log-odds, shrunk to the prior)",
    "module_vote": "related perturbations' vote on the gene's co-responding genes (lift over their rate)",
    "strength_combined": "how often related perturbations change any gene (log-odds)",
    "pg_network": "direct network link between the perturbation's targets and the gene",
    "pg_go_bp": "GO processes shared by the perturbation's targets and the gene",
    "p_readout": "the perturbation's own gene as a readout (lift of its DE rate)",
    "co_response": "co-response of the perturbation's gene and this gene as readouts",
    "ctx_rate": "the perturbation in other cell lines: lift of its DE rate there",
    "ctx_pair_n": "this pair measured in other cell lines (lines)",
    "ctx_pair_pos": "this pair DE in other cell lines (lines)",
}
"""Model features shown as "what the score rests on", in words."""


@dataclass(frozen=True)
class Explanation:
    """The evidence behind one prediction.

    Attributes:
        perturbation, gene, cell_line, task, method: The query and the model.
        p: The model's calibrated P(positive).
        p_prior: The gene's prior (its training rate: the gene-frequency score).
        effect: The effect score (:func:`coreperturb.predictors.effect.effect_score`).
        n_pos, n_neg: Related training perturbations that made the gene positive / left it negative.
        kg_info: Whether the KG knows the perturbation.
        evidence: One row per related perturbation (``evidence`` positive / negative,
            ``related_perturbation``, ``similarity`` (combined), ``strongest_relation`` (the relation with the
            highest similarity), ``link`` (the shared KG features in words), and ``sim_<relation>`` columns).
        drivers: What the score rests on besides the listed evidence (``feature``, ``meaning``, ``value``).
        context: For transfer models, ``(contexts, similar)`` of
            :meth:`coreperturb.evidence.context.ContextEvidence.for_query`.
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

    @property
    def has_evidence(self) -> bool:
        """Whether any related training perturbation was observed on the gene."""
        return self.n_pos + self.n_neg > 0

    def compact_evidence(self) -> pd.DataFrame:
        """The evidence without the per-relation similarity columns (fits a terminal)."""
        return self.evidence[[c for c in self.evidence.columns if not c.startswith("sim_")]]

    def summary(self) -> str:
        """One line: the prediction, the prior, the effect and the evidence counts."""
        ratio = float(np.exp(self.effect)) if np.isfinite(self.effect) else float("nan")
        return (
            f"P(positive) = {self.p:.3f}; gene prior = {self.p_prior:.3f}; effect = {self.effect:+.3f} "
            f"(evidence-shrunk P is {ratio:.2f}x the prior); evidence: {self.n_pos} related perturbations made "
            f"the gene positive, {self.n_neg} left it negative"
        )

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


def explain_pair(
    model: CoreVoting,
    kg: KnowledgeGraph,
    perturbation: str,
    gene: str,
    cell_line: str,
    task: str,
    top: int = 8,
) -> Explanation:
    """Explain one (perturbation, gene) prediction of a fitted CORE-Voting model.

    Args:
        model: A fitted :class:`~coreperturb.predictors.core_voting.CoreVoting` (or transfer) model.
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
    sim_cols = [c for c in table.columns if c.startswith("sim_")]
    if len(table) and sim_cols:
        best = table[sim_cols].to_numpy(dtype=np.float64).argmax(axis=1)
        table.insert(3, "strongest_relation", [sim_cols[j][4:] for j in best])
    else:
        table.insert(3, "strongest_relation", pd.Series(dtype=object))
    table = table.rename(columns={"paths": "link"})
    p, counts = model.predict_with_evidence(q)
    n_pos = int(counts["n_pos_evidence"].to_numpy()[0])
    n_neg = int(counts["n_neg_evidence"].to_numpy()[0])
    gi = int(positions(model.pool_.genes, [gene])[0])
    prior = float(model.pool_.gene_rate(GENE_PRIOR_STRENGTH)[gi]) if gi >= 0 else float("nan")
    effect = float(effect_score(p, np.array([prior]), np.array([n_pos + n_neg]))[0])
    feats = model.features(q)
    drivers = pd.DataFrame(
        [
            {"feature": f, "meaning": DRIVERS[f], "value": float(feats[f].to_numpy()[0])}
            for f in DRIVERS
            if f in feats.columns
        ]
    )
    context = None
    if model.context_ is not None:
        context = model.context_.for_query(perturbation, gene, model.pool_, top=top)
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


__all__ = ["DRIVERS", "Explanation", "explain_pair"]
