"""explain's words: evidence named by task, drugs by name and by their shared targets, notes on the named
perturbations a user should know about."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from coreperturb._explanations import explain
from coreperturb.cli._render import EVIDENCE_WORDS
from coreperturb.data import QueryTable
from coreperturb.evidence._words import drug_words
from coreperturb.graph import KnowledgeGraph
from coreperturb.stages import FitConfig, FittedModels, fit
from coreperturb.stages._flags import LOW_KG_COVERAGE, gene_notes, kg_coverage, perturbation_notes


def test_drug_evidence_names_drugs_and_leads_with_shared_targets(synth_kg: KnowledgeGraph) -> None:
    drugs = sorted(synth_kg.targets)

    def shares(a: str, b: str) -> bool:
        return bool(set(synth_kg.targets[a]) & set(synth_kg.targets[b]))

    p = next(d for d in drugs if any(shares(d, q) for q in drugs if q != d))
    sharing = [q for q in drugs if q != p and shares(p, q)]
    other = [q for q in drugs if q != p and not shares(p, q)]
    assert sharing and other
    table = pd.DataFrame(
        {
            "evidence": "positive",
            "related_perturbation": [sharing[0], other[0]],
            "similarity": [0.9, 0.5],
            "strongest_relation": ["go_bp", "go_bp"],
            "link": ["GO: some term", "GO: another term"],
        }
    )
    out = drug_words(synth_kg, p, table)
    assert out["name"].tolist() == [synth_kg.names[sharing[0]], synth_kg.names[other[0]]]
    assert out["strongest_relation"].tolist() == ["targets", "go_bp"]
    assert out["link"].iloc[0].startswith("shared target") and out["link"].iloc[1] == "GO: another term"
    # a gene perturbation's table is left as it is
    assert drug_words(synth_kg, "G0001", table).equals(table)


def test_evidence_words_follow_the_task() -> None:
    assert "positive" not in " ".join(EVIDENCE_WORDS["de"].values())
    assert EVIDENCE_WORDS["dir"]["positive"] == "made the gene go up"


@pytest.fixture(scope="module")
def models(synth_table: QueryTable, synth_kg: KnowledgeGraph):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(synth_table, synth_kg, FitConfig(methods=("core_voting",)))


def test_notes_name_screened_and_kg_poor_perturbations(models, synth_kg: KnowledgeGraph) -> None:
    line = models.cell_lines[0]
    screened = str(models.training_perturbations(line)[0])
    notes = perturbation_notes(models, [screened, "G0001"], [line])
    assert any(screened in n and "was screened" in n for n in notes)
    cov = kg_coverage(synth_kg, ["G0001"])[0]
    assert any("hardly knows" in n for n in notes) == (0 < cov < LOW_KG_COVERAGE and screened != "G0001")


def test_explain_states_the_scale_of_its_numbers(models) -> None:
    line = models.cell_lines[0]
    pert = next(p for p in ("G0001", "G0004", "G0010") if p not in set(models.training_perturbations(line)))
    gene = str(models.readout_genes(line)[5])
    ex = explain(pert, gene, models, cell_line=line)
    assert ex.scale == "genome" and "over the genome" in ex.summary()
    drivers = explain(pert, gene, models, cell_line=line, task="dir").drivers
    assert "up-rate" in drivers.set_index("feature").loc["base", "meaning"]


def test_a_gene_that_responds_to_most_perturbations_gets_one_line(synth_kg: KnowledgeGraph) -> None:
    train = pd.DataFrame(
        {
            "cell_line": "a",
            "task": "de",
            "perturbation": ["P1", "P2", "P3", "P4", "P1", "P2"],
            "gene": ["HBG2"] * 4 + ["FTH1"] * 2,
            "label": [1, 1, 1, 0, 0, 1],
        }
    )
    models = FittedModels(synth_kg, {("a", "de", "core_voting"): None}, train, FitConfig())  # type: ignore[dict-item]
    notes = gene_notes(models, ["HBG2", "FTH1", "GATA1"], ["a"])
    assert notes == [
        "a: FTH1 is DE under 1 of the 2 training perturbations that asked it: it responds to most "
        "perturbations, so its lists rank by how much more than usual",
        "a: HBG2 is DE under 3 of the 4 training perturbations that asked it: it responds to most "
        "perturbations, so its lists rank by how much more than usual",
    ]
