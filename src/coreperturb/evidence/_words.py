"""Evidence in words: what the model features mean, and drug evidence as a pharmacologist reads it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coreperturb.graph._kg import KnowledgeGraph

DRIVERS: dict[str, str] = {
    "base": "gene prior on the training table's scale: log-odds of its DE rate among the pairs asked",
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
"""Model features shown as "what the score rests on", in words (DE task; :data:`DIR_DRIVERS` overrides)."""
DIR_DRIVERS: dict[str, str] = {
    "base": "gene prior: log-odds of its training up-rate (among its DE observations)",
    "vote_combined": "related perturbations' vote on this gene's direction (log-odds of up, shrunk to the prior)",
    "strength_combined": "how often related perturbations raise the genes they change (log-odds)",
}
"""The direction task's words where they differ from :data:`DRIVERS`."""


def drug_words(kg: KnowledgeGraph, perturbation: str, table: pd.DataFrame) -> pd.DataFrame:
    """Drug evidence a pharmacologist reads: the related drug's name beside its id, and where two drugs share
    targets, that (``targets``) as the strongest relation, before any GO term their targets share."""
    if not len(table) or perturbation not in kg.targets:
        return table
    out = table.copy()
    related = out["related_perturbation"].astype(str)
    if kg.names:
        names = related.map(lambda q: kg.names.get(q, ""))
        at = list(out.columns).index("related_perturbation") + 1
        out.insert(at, "name", names.where(names != related, ""))
    own = set(kg.targets.get(perturbation, ()))
    shared = [sorted(own & set(kg.targets.get(q, ()))) for q in related]
    has = np.array([bool(x) for x in shared])
    if has.any():
        words = [f"shared target{'s' if len(x) > 1 else ''}: {', '.join(x[:4])}" for x in shared]
        out.loc[has, "strongest_relation"] = "targets"
        out.loc[has, "link"] = [
            f"{w}; {link}" for w, link, h in zip(words, out["link"], has, strict=True) if h
        ]
    return out


__all__ = ["DIR_DRIVERS", "DRIVERS", "drug_words"]
