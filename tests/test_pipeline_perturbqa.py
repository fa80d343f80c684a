"""Integration test on the real PerturbQA data in ../shared (skipped when it is absent)."""

from __future__ import annotations

import pytest

from coreperturb.data import load_perturbqa
from coreperturb.evaluation._metrics import METRICS
from coreperturb.graph import build_kg
from coreperturb.predictors import make_predictor
from tests.conftest import SHARED

pytestmark = pytest.mark.skipif(
    not (SHARED / "perturbqa" / "k562-de.csv").exists() or not (SHARED / "kg").is_dir(),
    reason=f"PerturbQA data not found at {SHARED} (../shared/data next to the checkout)",
)


def test_core_voting_per_gene_auroc_on_k562() -> None:
    table = load_perturbqa(SHARED / "perturbqa", ["k562"], ["de"])
    kg = build_kg(SHARED / "kg")
    train, test = table.split("train"), table.split("test")
    y, g, p = test["label"].to_numpy(), test["gene"].to_numpy(), test["perturbation"].to_numpy()
    macro = METRICS.get("macro_per_gene_auroc")
    auroc = METRICS.get("auroc")
    gf = make_predictor("gene_frequency", kg).fit(train).predict_proba(test)[:, 1]
    core = make_predictor("core_voting", kg).fit(train).predict_proba(test)[:, 1]
    assert macro(y, gf, g, p, 0.5) == 0.5
    assert macro(y, core, g, p, 0.5) > 0.65
    assert auroc(y, core, g, p, 0.5) >= auroc(y, gf, g, p, 0.5) - 0.002


def test_transfer_beats_per_line_on_hepg2_with_jurkat_context() -> None:
    """core_voting_transfer reads Jurkat's TRAINING rows only; it must rank HepG2 test perturbations better."""
    table = load_perturbqa(SHARED / "perturbqa", ["hepg2", "jurkat"], ["de"])
    kg = build_kg(SHARED / "kg")
    sub = table.subset("hepg2", "de")
    train, test = sub.split("train"), sub.split("test")
    f = table.frame
    context = f[(f["cell_line"] == "jurkat") & (f["split"] == "train")]
    y, g, p = test["label"].to_numpy(), test["gene"].to_numpy(), test["perturbation"].to_numpy()
    macro = METRICS.get("macro_per_gene_auroc")
    core = make_predictor("core_voting", kg).fit(train).predict_proba(test)[:, 1]
    transfer = (
        make_predictor("core_voting_transfer", kg).fit(train, context=context).predict_proba(test)[:, 1]
    )
    s_core, s_transfer = macro(y, core, g, p, 0.5), macro(y, transfer, g, p, 0.5)
    print(f"hepg2 macro per-gene AUROC: core_voting {s_core:.4f}, core_voting_transfer {s_transfer:.4f}")
    assert s_transfer > s_core + 0.02
