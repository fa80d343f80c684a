"""Integration test on the real PerturbQA data in ../shared (skipped when it is absent)."""

from __future__ import annotations

import pytest

from coreperturb.data import load_perturbqa
from coreperturb.evaluate.metrics import METRICS
from coreperturb.graph import build_kg
from coreperturb.predictors import make_predictor

from .conftest import SHARED

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
