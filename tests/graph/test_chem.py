"""Drugs related by chemical structure: structure tables, Tanimoto, defaults, model files and the CLI."""

from __future__ import annotations

import builtins
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.errors import KnowledgeGraphError
from coreperturb.graph import build_kg
from coreperturb.graph._chem import StructureWarning, read_structure_table
from coreperturb.graph._sources import available_sources
from coreperturb.graph._store import kg_hash, load_kg, save_kg

pytest.importorskip("rdkit", reason="RDKit is not installed (pip install 'coreperturb[chem]')")

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
SALICYLIC = "OC(=O)c1ccccc1O"
CAFFEINE = "Cn1cnc2c1c(=O)n(C)c(=O)n2C"


def _table(tmp_path: Path, text: str, name: str = "mine.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_structure_table_fingerprints_and_invalid_smiles(tmp_path: Path) -> None:
    p = _table(
        tmp_path,
        f"compound,SMILES,name\nASA,{ASPIRIN},aspirin\nSAL,{SALICYLIC},salicylic acid\n"
        f"CAF,{CAFFEINE},caffeine\nBAD,C1CC(,broken\nBIO,,antibody\n",
    )
    with pytest.warns(StructureWarning, match=r"1 SMILES could not be parsed.*BAD \(line 5\)"):
        t = read_structure_table(p)
    assert set(t.bits) == {"ASA", "SAL", "CAF"}
    assert t.missing == 1 and [i for _, i, _ in t.invalid] == ["BAD"]
    assert t.names["CAF"] == "caffeine"


def test_structure_table_errors_name_file_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeGraphError, match=r"mine.csv: no SMILES column.*columns present"):
        read_structure_table(_table(tmp_path, "id,formula\nX,C2H6\n"))
    dup = _table(tmp_path, f"id\tsmiles\nX\t{ASPIRIN}\nX\t{CAFFEINE}\n", "dup.tsv")
    with pytest.raises(KnowledgeGraphError, match=r"dup.tsv: line 3, column 'id': id 'X' is listed again"):
        read_structure_table(dup)
    with pytest.raises(KnowledgeGraphError, match="not found"):
        read_structure_table(tmp_path / "nope.csv")


def test_tanimoto_relation_and_targetless_drugs(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    mine = _table(tmp_path, f"id,smiles\nASA,{ASPIRIN}\nSAL,{SALICYLIC}\nCAF,{CAFFEINE}\n")
    from coreperturb.graph._sources import structure_table_source

    kg = build_kg(
        synth_paths.kg_dir, ["go", "drug_targets", "drug_structures"], extra=[structure_table_source(mine)]
    )
    s = kg.similarity(["ASA"], ["SAL", "CAF", "ASA"], "structure")[0]
    assert s[2] == pytest.approx(1.0) and s[0] > s[1] > -1e-9
    # Tanimoto = |a & b| / |a | b| on the fingerprint bits
    a, b = (set(kg.embed([x], "structure").indices) for x in ("ASA", "SAL"))
    assert s[0] == pytest.approx(len(a & b) / len(a | b), rel=1e-6)
    # the two synthetic drugs without a target have KG information through their structure
    assert kg.has_info(["DB90058", "DB90059", "UNKNOWN"]).tolist() == [True, True, False]
    assert {"DB90059", "ASA"} <= set(kg.compounds)
    (_, label, value), *_ = kg.shared_features("ASA", "SAL", "structure")
    assert label.startswith("structural similarity (Tanimoto") and value == pytest.approx(s[0])
    # model files keep the structure relation exactly
    save_kg(kg, tmp_path / "kg")
    back = load_kg(tmp_path / "kg")
    assert kg_hash(back) == kg_hash(kg)
    np.testing.assert_array_equal(back.similarity(["ASA"], ["SAL"], "structure"), s[:1][None, :])


def test_structures_are_default_only_for_compound_data(
    synth_paths: SyntheticPaths, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert "drug_structures" not in available_sources(synth_paths.kg_dir, ["G0001", "G0002"])
    assert "drug_structures" in available_sources(synth_paths.kg_dir, ["DB90001", "G0002"])
    monkeypatch.setattr("coreperturb.graph._sources.rdkit_available", lambda: False)
    assert "drug_structures" not in available_sources(synth_paths.kg_dir, ["DB90001"])
    assert "coreperturb[chem]" in caplog.text


def test_missing_rdkit_stops_with_install_hint(
    synth_paths: SyntheticPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = builtins.__import__

    def no_rdkit(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("rdkit"):
            raise ImportError("No module named 'rdkit'")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_rdkit)
    with pytest.raises(KnowledgeGraphError, match=r"needs RDKit.*coreperturb\[chem\]"):
        build_kg(synth_paths.kg_dir, ["go", "drug_structures"])


def test_fit_predict_a_new_compound_by_structure(synth_paths: SyntheticPaths, tmp_path: Path) -> None:
    """A compound that is only in the user's structure table gets a scored, unflagged prediction."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(synth_paths.data_dir / "drugs-de.csv", data / "drugs-de.csv")
    # a close analogue of a training drug (same ring system, other substituents)
    kg_struct = pd.read_csv(synth_paths.kg_dir / "drug_structures.tsv", sep="\t")
    train = pd.read_csv(data / "drugs-de.csv")
    ref = kg_struct[kg_struct["drugbank_id"].isin(train.loc[train["split"] == "train", "pert"])].iloc[0]
    analogue = "Br" + str(ref["smiles_rdkit_from_inchi"])
    mine = _table(tmp_path, f"id,smiles\nMYCPD-1,{analogue}\nMYCPD-2,not a smiles\n")
    from coreperturb import BenchmarkConfig, fit_to_directory, predict_to_file

    config = BenchmarkConfig.from_options(
        data_dir=data,
        kg_dir=synth_paths.kg_dir,
        kg_structures=[str(mine)],
        tasks="de",
        methods="gene_frequency,core_voting",
    )
    model = tmp_path / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StructureWarning)
        fit_to_directory(config, model)
    out = tmp_path / "pred.csv"
    predict_to_file(model, out, perturbations="MYCPD-1,MYCPD-2")
    pred = pd.read_csv(out)
    cv = pred[pred["method"] == "core_voting"]
    one = cv[cv["perturbation"] == "MYCPD-1"]
    assert len(one) and one["p_de"].notna().all() and (one["kg_coverage"] > 0).all()
    assert one["flag"].isna().all() or (one["flag"].fillna("") == "").all()
    # the invalid SMILES left MYCPD-2 without a structure: it is flagged, never silently scored as known
    assert "MYCPD-2" not in set(cv["perturbation"]) or (
        cv.loc[cv["perturbation"] == "MYCPD-2", "flag"].astype(str).str.contains("unknown|no_kg").all()
    )


@pytest.mark.skipif(
    not (SHARED / "kg" / "drug_structures.tsv").exists(),
    reason="../shared/data/kg/drug_structures.tsv absent",
)
def test_shared_structures_cover_every_lincs_compound() -> None:
    from coreperturb.graph._sources import drug_structures_source

    out = drug_structures_source(SHARED / "kg")
    assert len(out.structures) > 6000
    lincs = pd.read_csv(SHARED / "lincs" / "dysreg-drugbank-summary.tsv", sep="\t")
    ids = set(lincs.iloc[:, 0].astype(str))
    assert len(ids) >= 1000 and ids <= set(out.structures)
