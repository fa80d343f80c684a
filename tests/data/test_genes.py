"""The biology of a modality: the shipped gene annotation, candidates it cannot reach, line sex."""

from __future__ import annotations

import pytest

from coreperturb.data._genes import (
    gene_annotation,
    line_sex,
    modality,
    mt_and_y_genes,
    parse_sexes,
    unreachable,
)
from coreperturb.errors import ConfigError


def test_annotation_knows_chromosomes_and_both_spellings_of_mitochondrial_genes() -> None:
    ann = gene_annotation()
    assert ann.loc["TFRC", "chromosome"] == "3"
    assert ann.loc["ATP6", "chromosome"] == "MT" and ann.loc["MT-ATP6", "chromosome"] == "MT"
    assert ann.loc["MT-TF", "chromosome"] == "MT"  # tRNA without an MT alias: TRNF -> MT-TF
    assert ann.loc["CSF2RA", "chromosome"] == "X;Y"  # pseudo-autosomal: on X too
    assert (ann["chromosome"] == "MT").sum() == 74  # 37 genes, NCBI and HGNC names


def test_the_quick_mt_and_y_lookup_is_the_annotations() -> None:
    """unreachable() searches the file's text for MT / Y genes: the same genes as the parsed table."""
    chrom = gene_annotation()["chromosome"]
    assert mt_and_y_genes() == {g: c for g, c in chrom.items() if c in ("MT", "Y")}
    assert "CSF2RA" not in mt_and_y_genes()  # X;Y: on X too


def test_unreachable_by_modality_and_sex() -> None:
    names = ["TFRC", "ATP6", "MT-ND1", "EIF1AY", "CSF2RA", "NOT_A_GENE"]
    female = unreachable(names, "crispri", "female")
    assert set(female) == {"ATP6", "MT-ND1", "EIF1AY"}
    assert "mitochondrial" in female["ATP6"] and "chromosome Y" in female["EIF1AY"]
    assert set(unreachable(names, "knockout", "male")) == {"ATP6", "MT-ND1"}
    assert set(unreachable(names, "crispra", None)) == {"ATP6", "MT-ND1"}  # unknown sex: Y genes stay
    assert unreachable(names, "drug", "female") == {}


def test_modality_and_sex_settings() -> None:
    assert modality("CRISPRi").on_target == "down" and modality("crispra").on_target == "up"
    assert modality("drug").on_target is None
    with pytest.raises(ConfigError, match="unknown modality"):
        modality("rnai")
    assert line_sex("K562") == "female" and line_sex("hepg2") == "male" and line_sex("mine") is None
    assert line_sex("k562", ["K562=male"]) == "male"
    with pytest.raises(ConfigError, match="LINE=female"):
        parse_sexes(["k562:female"])
