"""What a user should know about the perturbations and genes of a query: the flags of each row, the KG
coverage, and one line per line about named perturbations that were screened or that the KG hardly knows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.stages._fitted import FittedModels
from coreperturb.stages._names import known_perturbation_set, unreachable_perturbations


def kg_coverage(kg: KnowledgeGraph, perturbations: Sequence[str]) -> np.ndarray:
    """Share of the KG's relations in which each perturbation (through its targets) has features."""
    if not kg.relations:
        return np.zeros(len(perturbations))
    return kg.coverage(perturbations).mean(axis=1)


def perturbation_flags(
    models: FittedModels, cell_line: str, perts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per perturbation: its flag and its KG coverage."""
    known = known_perturbation_set(models)
    trained = models.cached(
        f"trained/{cell_line}", lambda: set(models.training_perturbations(cell_line, "de").astype(str))
    )
    cov = kg_coverage(models.kg, list(perts))
    out_of_reach = unreachable_perturbations(models, cell_line, [p for p in perts if p not in trained])
    flags = np.array(
        [
            "unknown_perturbation"
            if p not in known
            else "training_perturbation"
            if p in trained
            else "unreachable"
            if p in out_of_reach
            else "no_kg_information"
            if c == 0
            else ""
            for p, c in zip(perts, cov, strict=True)
        ],
        dtype=object,
    )
    return flags, cov


LOW_KG_COVERAGE = 0.2
"""A perturbation the KG knows in fewer than this share of its relations rests on little evidence: said."""


def perturbation_notes(
    models: FittedModels, perturbations: Sequence[str], cell_lines: Sequence[str]
) -> list[str]:
    """One line per cell line for the named perturbations a user should know about before reading their
    rows: those the line's screen measured (their rows predict what was observed) and those the KG hardly
    knows (``kg_coverage`` below :data:`LOW_KG_COVERAGE`, above 0; 0 is flagged ``no_kg_information``)."""
    out = []
    perts = list(dict.fromkeys(map(str, perturbations)))
    cov = dict(zip(perts, kg_coverage(models.kg, perts), strict=True)) if perts else {}

    def names(xs: list[str]) -> str:
        return ", ".join(xs[:6]) + (f" and {len(xs) - 6} more" if len(xs) > 6 else "")

    for line in cell_lines:
        trained = set(models.training_perturbations(line, "de").astype(str))
        seen = [p for p in perts if p in trained]
        if seen:
            out.append(
                f"{line}: {names(seen)} {'was' if len(seen) == 1 else 'were'} screened (training "
                "perturbation): the rows predict what the screen measured; read the screen itself for them"
            )
        thin = [f"{p} ({cov[p]:.2f})" for p in perts if p not in trained and 0 < cov[p] < LOW_KG_COVERAGE]
        if thin:
            out.append(
                f"{line}: the KG hardly knows {names(thin)} (kg_coverage < {LOW_KG_COVERAGE:g}): their lists "
                "rest on few related perturbations"
            )
    return out


def gene_flags(models: FittedModels, cell_line: str, genes: Sequence[str]) -> np.ndarray:
    readouts = models.cached(f"readouts/{cell_line}", lambda: models.readout_genes(cell_line, "de"))
    return np.where(pd.Index(genes).isin(readouts), "", "unknown_gene").astype(object)


def join_flags(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both = (a != "") & (b != "")
    out = np.where(a != "", a, b).astype(object)
    out[both] = a[both] + ";" + b[both]
    return out


FREQUENT_RESPONDER = 0.5
"""A readout gene DE under at least this share of the training perturbations that asked it is said to
respond to most perturbations (HBG2 in K562: 181 of 198)."""


def gene_notes(models: FittedModels, genes: Sequence[str], cell_lines: Sequence[str]) -> list[str]:
    """One line per named gene that responds to most perturbations, with its counts: any list of the
    perturbations that move it is a list of a common event, ranked by how much more than usual."""
    out = []
    for line in cell_lines:
        if "de" not in models.tasks:
            continue
        rows = models.training_rows(line, "de")
        asked = rows.loc[rows["gene"].isin(list(genes))].groupby("gene")["label"].agg(["sum", "size"])
        for gene, (n_de, n) in asked.iterrows():
            if n and n_de / n >= FREQUENT_RESPONDER:
                out.append(
                    f"{line}: {gene} is DE under {int(n_de)} of the {int(n)} training perturbations that asked it: "
                    "it responds to most perturbations, so its lists rank by how much more than usual"
                )
    return out


__all__ = [
    "LOW_KG_COVERAGE",
    "gene_flags",
    "join_flags",
    "kg_coverage",
    "perturbation_flags",
    "perturbation_notes",
]
