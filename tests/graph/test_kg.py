from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.errors import KnowledgeGraphError, UnknownNameError
from coreperturb.graph import KnowledgeGraph, build_kg, edge_list_source, gmt_source


def test_relations_and_summary(synth_kg: KnowledgeGraph) -> None:
    assert {"go_bp", "go_cc", "network", "reactome"} <= set(synth_kg.relation_names)
    s = synth_kg.summary()
    assert (s["nnz"] > 0).all()
    assert synth_kg.targets  # drug targets loaded


def test_go_propagation_adds_parent_terms(synth_kg: KnowledgeGraph, synth_paths) -> None:
    import pandas as pd

    ann = pd.read_csv(synth_paths.kg_dir / "go_annotations.tsv", sep="\t")
    row = ann[ann["go_id"].str.startswith("GO:92")].iloc[0]
    rel = synth_kg.relations["go_bp"]
    gi = synth_kg.genes.get_loc(row["gene"])
    feats = set(rel.feature_ids[rel.matrix[gi].indices])
    parent = "GO:91" + row["go_id"][5:8].rjust(5, "0")
    assert row["go_id"] in feats and parent in feats
    # the root, annotated to every gene, is dropped as a hub (or weighs nothing)
    assert "GO:9000000" not in feats


def test_idf_downweights_common_features(synth_kg: KnowledgeGraph) -> None:
    rel = synth_kg.relations["go_bp"]
    df = np.asarray((rel.matrix > 0).sum(axis=0)).ravel()
    w = np.asarray(rel.matrix.max(axis=0).toarray()).ravel()
    common, rare = np.argmax(df), np.argmin(np.where(df > 0, df, 10**9))
    assert w[common] < w[rare]


def test_similarity_related_more_than_unrelated(synth_kg: KnowledgeGraph, synth_paths) -> None:
    import pandas as pd

    ann = pd.read_csv(synth_paths.kg_dir / "go_annotations.tsv", sep="\t")
    mod0 = sorted(set(ann.loc[ann["go_id"].str.startswith("GO:92000"), "gene"]))
    mod1 = sorted(set(ann.loc[ann["go_id"].str.startswith("GO:92001"), "gene"]) - set(mod0))
    s = synth_kg.similarity(mod0[:5], mod0[5:10] + mod1[:5], "go_bp")
    assert s[:, :5].mean() > s[:, 5:].mean()
    assert synth_kg.shared_features(mod0[0], mod0[1], "go_bp") or True


def test_drug_embedding_through_targets(synth_kg: KnowledgeGraph) -> None:
    drug, targets = next(iter(synth_kg.targets.items()))
    e_drug = synth_kg.embed([drug], "go_bp")
    e_target = synth_kg.embed([targets[0]], "go_bp")
    assert e_drug.nnz > 0 and float((e_drug @ e_target.T).toarray()[0, 0]) > 0
    assert not synth_kg.has_info(["NO_SUCH_DRUG"])[0]
    assert synth_kg.embed(["NO_SUCH_DRUG"], "go_bp").nnz == 0


def test_user_edge_list_and_gmt(tmp_path: Path) -> None:
    (tmp_path / "string.tsv").write_text("gene_a\tgene_b\nA\tB\nB\tC\n")
    (tmp_path / "sets.gmt").write_text("SET1\tdesc\tA\tB\nSET2\tdesc\tC\tD\n")
    kg = build_kg(
        None,
        [],
        extra=[edge_list_source(tmp_path / "string.tsv", "string"), gmt_source(tmp_path / "sets.gmt")],
    )
    assert set(kg.relation_names) == {"string", "sets"}
    s = kg.similarity(["A"], ["B", "D"], "sets")
    assert s[0, 0] > 0 and s[0, 1] == 0


def test_bad_kg_inputs(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeGraphError, match="KG directory not found"):
        build_kg(tmp_path / "nope")
    with pytest.raises(KnowledgeGraphError, match=r"go_annotations\.tsv: file for KG source 'go' not found"):
        build_kg(tmp_path, ["go"])
    with pytest.raises(UnknownNameError, match="unknown KG source 'stringdb'; available"):
        build_kg(tmp_path, ["stringdb"])
    (tmp_path / "bad.gmt").write_text("ONLYNAME\n")
    with pytest.raises(KnowledgeGraphError, match=r"bad\.gmt: line 1: a GMT line needs"):
        build_kg(None, [], extra=[gmt_source(tmp_path / "bad.gmt")])
    (tmp_path / "go_annotations.tsv").write_text("gene\tterm\nA\tGO:1\n")
    with pytest.raises(KnowledgeGraphError, match=r"missing column\(s\) \['go_id', 'aspect'\]"):
        build_kg(tmp_path, ["go"])


def test_weights_do_not_depend_on_the_loaded_readout_genes(synth_paths: SyntheticPaths) -> None:
    """Extra genes (readouts of whatever cell lines are loaded) widen the index but must not change the IDF
    weights, the hub cut or any similarity: a model must not depend on which other datasets were loaded."""
    plain = build_kg(synth_paths.kg_dir)
    extra = [f"EXTRA{i}" for i in range(5000)]
    wide = build_kg(synth_paths.kg_dir, extra_genes=extra)
    assert len(wide.genes) == len(plain.genes) + len(extra)
    genes = list(plain.genes[:40])
    for r in plain.relation_names:
        np.testing.assert_array_equal(plain.similarity(genes, genes, r), wide.similarity(genes, genes, r))
        np.testing.assert_array_equal(plain.relations[r].feature_ids, wide.relations[r].feature_ids)
        assert wide.embed(extra[:3], r).nnz == 0
