"""Prompts as typed, versioned, hashed templates, rendered from KG facts and contrastive evidence.

Two families, each with a DE and a direction variant:

* ``isolated``: the "virtual cell" baseline — KG facts about the perturbation p and the gene g, then the
  question, answered in isolation.
* ``core``: CORE-Reasoning — the same facts plus g's base rate and the contrastive evidence for g: related
  observed perturbations that changed g (positive) and related ones that did not (negative), each with the
  relation that links it to p, asked as a comparison.

Rendered prompts put what depends only on g first, so queries sorted by gene share a prefix that server
prefix caches (vLLM, llama.cpp) reuse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coreperturb._registry import Registry
from coreperturb._util import positions
from coreperturb.evidence._contrastive import ContrastiveEvidence
from coreperturb.evidence._pool import ObservationPool
from coreperturb.evidence._similarity import SimilarityBundle
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.llm._backends import Message

RELATION_WORDS = {
    "go_bp": "shared GO process",
    "go_mf": "shared GO function",
    "go_cc": "shared GO component",
    "network": "network neighbours",
    "reactome": "shared Reactome pathway",
    "corum": "shared protein complex",
    "targets": "shared target",
    "string_experiments": "STRING experimental partners",
    "string_database": "STRING curated partners",
    "string_coexpression": "STRING co-expression partners",
    "coessentiality": "co-essential partners",
    "huri": "HuRI interaction partners",
    "dorothea_regulators": "shared regulators",
    "dorothea_targets": "shared regulated targets",
    "structure": "similar chemical structure",
}


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt template.

    Attributes:
        name: Registry name, e.g. ``core_de``.
        version: Bumped on any wording change (part of the cache key through :attr:`hash`).
        system: System message.
        user: User message with ``{fields}`` filled by :class:`PromptBuilder`.
        positive_word: What a positive label means in words ("changed", "increased").
    """

    name: str
    version: str
    system: str
    user: str
    positive_word: str = "changed"

    @property
    def hash(self) -> str:
        """sha256 of everything that shapes the prompt text (first 16 hex digits)."""
        blob = "\x1f".join([self.name, self.version, self.system, self.user, self.positive_word])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def render(self, **fields: str) -> list[Message]:
        """Chat messages with the fields filled in."""
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.format(**fields)},
        ]


TEMPLATES: Registry[PromptTemplate] = Registry("prompt template")

_SYSTEM = (
    "You are an expert in functional genomics predicting single-cell perturbation outcomes. "
    "Reply with exactly one word: Yes or No."
)
_GENE = "Readout gene {gene}.\n{gene_facts}\n"
_PERT = "Perturbation: {perturbation_phrase}.\n{perturbation_facts}\n"

for _task, _q, _pos in (
    ("de", "Is {gene} differentially expressed after {perturbation_phrase} in {cell_line} cells?", "changed"),
    (
        "dir",
        "Given that {gene} responds, is {gene} up-regulated (Yes) rather than down-regulated (No) after "
        "{perturbation_phrase} in {cell_line} cells?",
        "increased",
    ),
):
    TEMPLATES.register(f"isolated_{_task}")(
        PromptTemplate(
            name=f"isolated_{_task}",
            version="1",
            system=_SYSTEM,
            user=_GENE + _PERT + "Think about the mechanism linking the perturbation to the gene.\n"
            f"Question: {_q}\nAnswer Yes or No.",
            positive_word=_pos,
        )
    )
    TEMPLATES.register(f"core_{_task}")(
        PromptTemplate(
            name=f"core_{_task}",
            version="1",
            system=_SYSTEM,
            user=_GENE
            + "{base_rate}\n"
            + _PERT
            + "Observed perturbations related to {perturbation} that {positive_word} {gene}:\n{positive}\n"
            "Observed perturbations related to {perturbation} that did NOT {positive_word_base} {gene}:\n{negative}\n"
            f"Is {{perturbation}} more like the perturbations that {_pos} {{gene}} or like those that did not?\n"
            f"Question: {_q}\nAnswer Yes or No.",
            positive_word=_pos,
        )
    )


def template_for(family: str, task: str) -> PromptTemplate:
    """The template of ``family`` (``isolated`` / ``core``) for ``task`` (``de`` / ``dir``)."""
    return TEMPLATES.get(f"{family}_{task}")


def _top_features(kg: KnowledgeGraph, ids: Sequence[str], relation: str, n: int) -> list[list[str]]:
    """The ``n`` most specific (highest-weight) feature labels of each id in a relation."""
    if relation not in kg.relations or kg.relations[relation].kind == "structure":
        return [[] for _ in ids]
    rel = kg.relations[relation]
    e = kg.embed(list(ids), relation).tocsr()
    out = []
    for i in range(len(ids)):
        lo, hi = e.indptr[i], e.indptr[i + 1]
        order = np.argsort(-e.data[lo:hi])[:n]
        out.append([str(rel.feature_labels[e.indices[lo + k]]) for k in order])
    return out


class PromptBuilder:
    """Renders prompts for a batch of queries from the KG, the training pool and contrastive evidence.

    Args:
        kg: Knowledge graph (facts and relation names).
        pool: Observed training outcomes (base rates).
        n_terms: GO terms / neighbours listed per entity.
        n_evidence: Related perturbations listed per side.
    """

    def __init__(
        self, kg: KnowledgeGraph, pool: ObservationPool, n_terms: int = 4, n_evidence: int = 6
    ) -> None:
        self.kg = kg
        self.pool = pool
        self.n_terms = n_terms
        self.n_evidence = n_evidence

    def _facts(self, ids: Sequence[str]) -> dict[str, str]:
        bp = _top_features(self.kg, ids, "go_bp", self.n_terms)
        mf = _top_features(self.kg, ids, "go_mf", 2)
        nb = _top_features(self.kg, ids, "network", self.n_terms + 1)
        out = {}
        for k, x in enumerate(ids):
            parts = []
            if bp[k]:
                parts.append("processes: " + "; ".join(bp[k]))
            if mf[k]:
                parts.append("functions: " + "; ".join(mf[k]))
            neigh = [n for n in nb[k] if n != x][: self.n_terms]
            if neigh:
                parts.append("interacts with: " + ", ".join(neigh))
            out[x] = ("GO " + " | ".join(parts)) if parts else "No knowledge-graph facts available."
        return out

    def _phrase(self, p: str) -> tuple[str, str]:
        targets = self.kg.targets.get(p)
        if targets is not None:
            name = self.kg.names.get(p, p)
            return f"treatment with the drug {name} ({p})", "Targets: " + ", ".join(targets[:8]) + ". "
        if p in self.kg.genes:
            return f"CRISPRi knockdown of {p}", ""
        return f"perturbation {p}", "Targets: unknown. "

    def render(
        self,
        family: str,
        task: str,
        queries: pd.DataFrame,
        evidence: ContrastiveEvidence | None = None,
        sims: SimilarityBundle | None = None,
    ) -> list[list[Message]]:
        """Messages for every query row (``cell_line``, ``perturbation``, ``gene``)."""
        tpl = template_for(family, task)
        q = queries.reset_index(drop=True)
        genes = [str(x) for x in q["gene"]]
        perts = [str(x) for x in q["perturbation"]]
        facts = self._facts(sorted(set(genes) | set(perts)))
        rate = self.pool.gene_rate()
        gi = positions(self.pool.genes, genes)
        obs = self.pool.gene_obs
        best_rel: np.ndarray | None = None
        rel_names = list(sims.by_relation) if sims is not None else []
        out: list[list[Message]] = []
        for i in range(len(q)):
            p, g = perts[i], genes[i]
            phrase, tfacts = self._phrase(p)
            fields = {
                "gene": g,
                "gene_facts": facts[g],
                "perturbation": p,
                "perturbation_phrase": phrase,
                "perturbation_facts": tfacts + facts[p],
                "cell_line": str(q["cell_line"].iat[i]) if "cell_line" in q.columns else "the",
                "positive_word": tpl.positive_word,
                "positive_word_base": "change" if tpl.positive_word == "changed" else "increase",
            }
            if family == "core":
                if evidence is None or sims is None:
                    raise ValueError("core prompts need evidence and similarities")
                n = int(obs[gi[i]]) if gi[i] >= 0 else 0
                r = float(rate[gi[i]]) if gi[i] >= 0 else self.pool.global_rate
                fields["base_rate"] = (
                    f"Base rate: {g} {tpl.positive_word} under {r:.0%} of {n} observed perturbations."
                )
                row = evidence.weight.getrow(i)
                lab = evidence.positive.getrow(i).toarray().ravel()
                cols, w = row.indices, row.data
                qi = int(positions(sims.queries, [p])[0])
                sides: dict[bool, list[str]] = {True: [], False: []}
                for j in np.argsort(-w):
                    c = int(cols[j])
                    is_pos = bool(lab[c] > 0)
                    if len(sides[is_pos]) >= self.n_evidence:
                        continue
                    if rel_names:
                        best_rel = np.array([sims.by_relation[rn][qi, c] for rn in rel_names])
                        why = RELATION_WORDS.get(
                            rel_names[int(best_rel.argmax())], rel_names[int(best_rel.argmax())]
                        )
                    else:
                        why = "related"
                    sides[is_pos].append(f"- {evidence.pool[c]} ({why}, similarity {w[j]:.2f})")
                fields["positive"] = "\n".join(sides[True]) or "- none"
                fields["negative"] = "\n".join(sides[False]) or "- none"
            out.append(tpl.render(**fields))
        return out


__all__ = ["RELATION_WORDS", "TEMPLATES", "PromptBuilder", "PromptTemplate", "template_for"]
