"""Drug perturbations: signature tables → queries, drugs in the KG, CORE on the synthetic drug benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb._pipeline import BenchmarkConfig, run_benchmark
from coreperturb.data._signatures import load_lincs, signatures_to_queries
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.errors import DataValidationError
from coreperturb.graph import KnowledgeGraph, build_kg
from tests.conftest import SHARED

UNIVERSE = pd.DataFrame({"entrez_gene_id": ["1", "2", "3", "4", "5", "6"], "symbol": list("ABCDEF")})


def _sig(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["perturbagen", "entrez_gene_id", "direction"])


def test_signatures_become_de_and_dir_queries() -> None:
    sig = _sig([("D1", "1", "up"), ("D1", "2", "down"), ("D2", "3", "up"), ("D3", "1", "down")])
    table, rep = signatures_to_queries(
        sig, UNIVERSE, negatives_per_perturbation=2, test_fraction=0.34, seed=1
    )
    f = table.frame
    de, dr = f[f["task"] == "de"], f[f["task"] == "dir"]
    assert set(de.loc[de["label"] == 1, "gene"]) == {"A", "B", "C"}  # ids mapped to symbols
    assert (de.groupby("perturbation")["label"].apply(lambda s: (s == 0).sum()) == 2).all()
    assert dict(zip(dr["perturbation"] + dr["gene"], dr["label"], strict=True)) == {
        "D1A": 1,
        "D1B": 0,
        "D2C": 1,
        "D3A": 0,
    }
    # negatives never repeat a significant gene of the same perturbation
    assert not de.duplicated(["perturbation", "gene"]).any()
    assert rep.n_test_perturbations == 1 and rep.n_train_perturbations == 2
    assert set(f.loc[f["split"] == "test", "perturbation"]).isdisjoint(
        f.loc[f["split"] == "train", "perturbation"]
    )
    again, _ = signatures_to_queries(sig, UNIVERSE, negatives_per_perturbation=2, test_fraction=0.34, seed=1)
    pd.testing.assert_frame_equal(again.frame, table.frame)


def test_bad_signature_rows_are_counted_or_raise() -> None:
    sig = _sig(
        [("D1", "1", "up"), ("D1", "1", "up"), ("D1", "99", "up"), ("D2", "2", "down"), ("D3", "3", "up")]
    )
    _, rep = signatures_to_queries(sig, UNIVERSE, negatives_per_perturbation=1, test_fraction=0.34)
    assert rep.dropped_duplicate == 1 and rep.dropped_unknown_gene == 1
    assert rep.unknown_gene_examples == ("99",)
    assert any("dropped 1 rows with gene ids outside the universe" in line for line in rep.lines())
    with pytest.raises(DataValidationError, match=r"sig\.tsv, row 4, column 'entrez_gene_id': gene id '99'"):
        signatures_to_queries(sig, UNIVERSE, strict=True, source="sig.tsv")
    with pytest.raises(
        DataValidationError, match=r"sig\.tsv, row 3: duplicate pair perturbation='D1' gene='1'"
    ):
        signatures_to_queries(sig.drop(index=2), UNIVERSE, strict=True, source="sig.tsv")


def test_unknown_direction_names_row_and_column() -> None:
    sig = _sig([("D1", "1", "up"), ("D2", "2", "sideways"), ("D3", "3", "down")])
    with pytest.raises(DataValidationError, match=r"s\.tsv, row 3, column 'direction': direction 'sideways'"):
        signatures_to_queries(sig, UNIVERSE, source="s.tsv")


def test_missing_lincs_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"consensi-drugbank-binary\.tsv: file not found"):
        load_lincs(tmp_path)


def test_drug_without_target_falls_back_to_prior(
    synth_paths: SyntheticPaths, synth_kg: KnowledgeGraph
) -> None:
    assert synth_paths.lincs_dir is not None
    table, rep = load_lincs(synth_paths.lincs_dir, tasks=("de",), test_fraction=0.3, seed=0)
    drugs = sorted(table.frame["perturbation"].unique())
    info = synth_kg.has_info(drugs)
    assert rep.n_perturbations == len(drugs) and (~info).sum() == 2  # the generator's two untargeted drugs
    # a drug id is not mistaken for a gene even if the gene universe were to contain it
    assert synth_kg.target_matrix([drugs[0]]).nnz == len(synth_kg.targets[drugs[0]])


@pytest.fixture(scope="module")
def drug_result(synth_paths: SyntheticPaths) -> pd.DataFrame:
    cfg = BenchmarkConfig.from_options(
        data_dir=synth_paths.lincs_dir, kg_dir=synth_paths.kg_dir, dataset="lincs", tasks=("de", "dir")
    )
    return run_benchmark(cfg).metrics


def test_core_voting_on_synthetic_drugs(drug_result: pd.DataFrame) -> None:
    m = drug_result.set_index(["task", "method", "metric"])["value"]
    assert m[("de", "gene_frequency", "macro_per_gene_auroc")] == 0.5
    assert m[("de", "core_voting", "macro_per_gene_auroc")] > 0.6
    assert m[("de", "core_voting", "auroc")] >= m[("de", "gene_frequency", "auroc")]
    assert m[("dir", "core_voting", "macro_per_gene_auroc")] > 0.55
    # untargeted test drugs are counted, not hidden
    n_without = m[("de", "core_voting", "n_test_perturbations_without_kg")]
    assert 0 <= n_without <= 2 and m[("de", "core_voting", "n_test_perturbations")] == 18


@pytest.mark.skipif(not (SHARED / "lincs").is_dir(), reason=f"LINCS data not found under {SHARED}")
def test_lincs_integration() -> None:
    table, rep = load_lincs(SHARED / "lincs", tasks=("de",), seed=0)
    assert rep.n_perturbations == 1116 and rep.dropped_unknown_gene == 0
    kg = build_kg(SHARED / "kg", sources=["go", "drug_targets"], extra_genes=table.frame["gene"].unique())
    cfg = BenchmarkConfig.from_options(methods=("gene_frequency", "core_voting"), dataset="lincs")
    res = run_benchmark(cfg, inputs=(table, kg)).metrics.set_index(["method", "metric"])["value"]
    assert res[("gene_frequency", "macro_per_gene_auroc")] == 0.5
    assert res[("core_voting", "macro_per_gene_auroc")] > 0.62
    assert res[("core_voting", "n_test_perturbations_without_kg")] > 0
    assert np.isfinite(res[("core_voting", "auroc")])


def test_llm_methods_run_on_drugs(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    cfg = BenchmarkConfig.from_options(
        data_dir=synth_paths.lincs_dir,
        kg_dir=synth_paths.kg_dir,
        dataset="lincs",
        methods=("gene_frequency", "llm_isolated", "core_reasoning"),
        llm="scripted",
        max_queries=120,
        calibration_queries=0,
        response_cache=tmp_path / "c.sqlite",
    )
    res = run_benchmark(cfg)
    pred = res.predictions[res.predictions["method"] == "core_reasoning"]
    assert len(pred) <= 120 and pred["error"].isna().all()
    assert res.llm_stats["core_reasoning"].n_calls == len(pred)
    assert res.llm_details is not None and (res.llm_details["score_method"] == "logprobs").all()
    kg = res.kg
    assert kg is not None
    pred = pred[pred["perturbation"].isin(list(kg.targets))]
    drug = pred["perturbation"].iat[0]
    from coreperturb.evidence._pool import ObservationPool
    from coreperturb.llm._prompts import PromptBuilder

    text = PromptBuilder(kg, ObservationPool.from_frame(pred)).render("isolated", "de", pred.head(1))[0][1][
        "content"
    ]
    assert f"({drug})" in text and "drug" in text and "CRISPRi" not in text
