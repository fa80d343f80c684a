"""KG release 2 sources (STRING channels, co-essentiality, HuRI, DoRothEA): parsing, bad rows, opt-in use."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.errors import KnowledgeGraphError
from coreperturb.graph import build_kg
from coreperturb.graph._sources import (
    KG_SOURCES,
    OPTIONAL_SOURCE_FILES,
    SOURCE_FILES,
    SourceInfo,
    available_sources,
)

SHARED_KG = Path(__file__).resolve().parents[3] / "shared" / "data" / "kg"
STRING_HEADER = (
    "gene_a\tgene_b\tentrez_a\tentrez_b\tneighborhood\tneighborhood_transferred\tfusion\tcooccurence\t"
    "homology\tcoexpression\tcoexpression_transferred\texperiments\texperiments_transferred\tdatabase\t"
    "database_transferred\tcombined_score\n"
)


def _string_row(a: str, b: str, coexp: int, exp: int, exp_t: int, db: int) -> str:
    return f"{a}\t{b}\t1\t2\t0\t0\t0\t0\t0\t{coexp}\t0\t{exp}\t{exp_t}\t{db}\t0\t900\n"


@pytest.fixture()
def kg_dir(synth_paths: SyntheticPaths, tmp_path: Path) -> Path:
    d = tmp_path / "kg"
    shutil.copytree(synth_paths.kg_dir, d)
    (d / "string_v12_edges.tsv").write_text(
        STRING_HEADER
        + _string_row("G0001", "G0002", 0, 450, 0, 0)  # experiments only
        + _string_row("G0002", "G0003", 0, 100, 420, 0)  # transferred experiments count too
        + _string_row("G0003", "G0004", 800, 0, 0, 0)  # co-expression only
        + _string_row("G0004", "G0005", 0, 0, 0, 950)  # curated database only
        + _string_row("G0005", "G0006", 100, 100, 100, 100)  # below every threshold
    )
    (d / "coessentiality_edges.tsv").write_text(
        "gene_a\tgene_b\tgene_a_orig\tgene_b_orig\nG0001\tG0009\tx\ty\n"
    )
    (d / "huri_edges.tsv").write_text("gene_a\tgene_b\tsources\nG0001\tG0008\tHI-union\n")
    (d / "dorothea_regulons.tsv").write_text(
        "tf\tconfidence\ttarget\tmor\nG0010\tA\tG0011\t1\nG0010\tB\tG0012\t-1\nG0013\tE\tG0011\t1\n"
    )
    return d


def _edges(kg: object, rel: str) -> set[tuple[str, str]]:
    m = kg.relations[rel]  # type: ignore[attr-defined]
    out = set()
    genes = kg.genes  # type: ignore[attr-defined]
    coo = m.matrix.tocoo()
    for r, c in zip(coo.row, coo.col, strict=True):
        a, b = str(genes[r]), str(m.feature_ids[c])
        if a != b:
            out.add(tuple(sorted((a, b))))
    return out


def test_new_sources_parse_and_only_string_is_a_default(kg_dir: Path) -> None:
    assert set(available_sources(kg_dir)) == {"go", "gene_network", "reactome", "drug_targets", "string"}
    kg = build_kg(kg_dir, ["go", "string", "coessentiality", "huri", "dorothea"])
    assert _edges(kg, "string_experiments") == {("G0001", "G0002"), ("G0002", "G0003")}
    assert _edges(kg, "string_coexpression") == {("G0003", "G0004")}
    assert _edges(kg, "string_database") == {("G0004", "G0005")}
    assert _edges(kg, "coessentiality") == {("G0001", "G0009")} and _edges(kg, "huri") == {("G0001", "G0008")}
    reg = kg.relations["dorothea_regulators"]
    row = reg.matrix.getrow(int(kg.genes.get_loc("G0012")))
    assert [reg.feature_ids[j] for j in row.indices] == ["G0010-"]  # signed; E-level edges left out
    assert "G0013+" not in set(reg.feature_ids)
    tg = kg.relations["dorothea_targets"]
    row = tg.matrix.getrow(int(kg.genes.get_loc("G0010")))
    assert sorted(tg.feature_ids[j] for j in row.indices) == ["G0011+", "G0012-"]
    # TFs regulating the same targets with the same sign are similar; a knockdown of a target gene
    # embeds through its regulators
    assert kg.similarity(["G0011"], ["G0012"], "dorothea_regulators")[0, 0] == 0.0  # opposite signs
    assert np.isclose(kg.similarity(["G0010"], ["G0010"], "dorothea_targets")[0, 0], 1.0)


def test_sources_carry_their_file_and_use_in_the_registry(kg_dir: Path) -> None:
    """Which file a source reads and when it is used live in its registry entry; the file maps derive."""
    infos = {n: KG_SOURCES.info(n) for n in KG_SOURCES.in_order()}
    assert all(isinstance(i, SourceInfo) for i in infos.values())
    assert {n: i.file for n, i in infos.items() if i.use == "default"} == SOURCE_FILES
    assert list(SOURCE_FILES) == ["go", "gene_network", "reactome", "corum", "drug_targets", "string"]
    assert list(OPTIONAL_SOURCE_FILES) == ["coessentiality", "huri", "dorothea"]
    assert infos["drug_structures"] == SourceInfo("drug_structures.tsv", "drugs")
    (kg_dir / "huri_edges.tsv").unlink()
    with pytest.raises(KnowledgeGraphError, match=r"huri_edges.tsv: file for KG source 'huri' not found"):
        build_kg(kg_dir, ["go", "huri"])
    with pytest.raises(ValueError, match="expected default, named or drugs"):
        SourceInfo("x.tsv", "sometimes")


def test_bad_rows_name_file_line_and_column(kg_dir: Path) -> None:
    text = (kg_dir / "string_v12_edges.tsv").read_text().splitlines()
    text[2] = text[2].replace("\t420\t", "\thigh\t")
    (kg_dir / "string_v12_edges.tsv").write_text("\n".join(text) + "\n")
    with pytest.raises(
        KnowledgeGraphError,
        match=r"string_v12_edges\.tsv: line 3, column 'experiments_transferred': 'high' is not a number",
    ):
        build_kg(kg_dir, ["string"])
    (kg_dir / "dorothea_regulons.tsv").write_text(
        "tf\tconfidence\ttarget\tmor\nG0010\tA\tG0011\t1\nG0010\tZ\tG0012\t1\n"
    )
    with pytest.raises(
        KnowledgeGraphError,
        match=r"dorothea_regulons\.tsv: line 3, column 'confidence': 'Z' is not one of A-E",
    ):
        build_kg(kg_dir, ["dorothea"])
    (kg_dir / "dorothea_regulons.tsv").write_text("tf\tconfidence\ttarget\tmor\nG0010\tA\tG0011\t2\n")
    with pytest.raises(KnowledgeGraphError, match=r"line 2, column 'mor': '2' is not 1 or -1"):
        build_kg(kg_dir, ["dorothea"])
    (kg_dir / "huri_edges.tsv").unlink()
    with pytest.raises(KnowledgeGraphError, match=r"huri_edges\.tsv: file for KG source 'huri' not found"):
        build_kg(kg_dir, ["huri"])


@pytest.mark.skipif(
    not (SHARED_KG / "string_v12_edges.tsv").is_file(), reason="KG release 2 files not in ../shared"
)
def test_release2_files_in_shared_build() -> None:
    kg = build_kg(SHARED_KG, ["string", "coessentiality", "huri", "dorothea"])
    s = kg.summary().set_index("relation")["genes_covered"]
    assert s["string_experiments"] > 10_000 and s["coessentiality"] > 15_000 and s["huri"] > 10_000
    assert s["dorothea_targets"] > 200  # TFs with A-C regulons


def test_signed_tf_links_feature(kg_dir: Path) -> None:
    """Knocking down an activator lowers its targets: the direction features carry the regulon's sign."""
    import pandas as pd

    from coreperturb.evidence._features import signed_links

    kg = build_kg(kg_dir, ["go", "dorothea"])
    genes = pd.Index(["G0011", "G0012", "G0013"])
    m = signed_links(kg, ["G0010", "G0011"], genes)
    assert m.tolist() == [[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]
    assert "pg_signed" not in _feature_names(build_kg(kg_dir, ["go"]))
    assert "pg_signed" in _feature_names(kg)


def _feature_names(kg: object) -> list[str]:
    import pandas as pd

    from coreperturb.evidence import relational_similarity
    from coreperturb.evidence._features import evidence_features
    from coreperturb.evidence._pool import ObservationPool

    train = pd.DataFrame({"perturbation": ["G0010", "G0020"], "gene": ["G0011", "G0011"], "label": [1, 0]})
    pool = ObservationPool.from_frame(train)
    sims = relational_similarity(kg, ["G0030"], list(pool.perturbations))  # type: ignore[arg-type]
    q = pd.DataFrame({"perturbation": ["G0030"], "gene": ["G0011"]})
    return list(evidence_features(q, pool, sims, kg))  # type: ignore[arg-type]


def test_explain_names_channel_and_regulon_sign() -> None:
    from coreperturb.evidence._contrastive import describe_link

    assert describe_link("string_experiments", "network", "POLR2A", "POLR2A") == (
        "STRING experiments channel: shared partner POLR2A"
    )
    assert (
        describe_link("dorothea_targets", "annotation", "MYC+", "MYC+")
        == "DoRothEA regulon: both activate MYC"
    )
    assert describe_link("dorothea_regulators", "annotation", "TP53-", "TP53-") == (
        "DoRothEA regulon: both repressed by TP53"
    )
    assert describe_link("go_bp", "annotation", "GO:1", "translation") == "GO process: translation (GO:1)"
    assert describe_link("structure", "structure", "tanimoto", "structural similarity (Tanimoto 0.62)") == (
        "structural similarity (Tanimoto 0.62)"
    )
