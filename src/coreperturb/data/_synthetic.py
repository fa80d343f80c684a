"""A small synthetic benchmark with planted, KG-consistent signal.

Genes fall into functional modules. The KG (GO terms with a small DAG, a network, pathways, drug targets)
is generated from the modules with noise; knocking down a gene of module ``m`` (or giving a drug that targets
module ``m``) makes the module's response programme DE with high probability, on top of gene-specific base
rates. So perturbations that the KG relates respond alike on the same readout gene: exactly the signal that
contrastive evidence exploits, while gene-frequency alone stays at 0.5 per gene.

Files are written in the same formats as the real data so the same loaders are exercised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coreperturb._deprecation import keyword_options
from coreperturb.data._design import DESIGN_FILE


@dataclass(frozen=True)
class SyntheticPaths:
    """Where :func:`write_synthetic` put its files."""

    data_dir: Path
    kg_dir: Path
    cell_lines: tuple[str, ...]
    lincs_dir: Path | None = None


def _module_of(n_genes: int, n_modules: int, rng: np.random.Generator) -> np.ndarray:
    mod = np.arange(n_genes) % (n_modules + 1) - 1  # -1 = background genes
    return rng.permutation(mod)


# ring systems (one per module, reused cyclically) and substituents of the synthetic compounds
_SCAFFOLDS = (
    "c1ccccc1",
    "c1ccncc1",
    "C1CCCCC1",
    "c1ccc2ccccc2c1",
    "c1ccoc1",
    "C1CCNCC1",
    "c1cnc2[nH]cnc2c1",
    "c1ccsc1",
    "C1CCOC1",
    "c1ccc2[nH]ccc2c1",
    "C1CC2CCC1C2",
    "c1cncnc1",
)
_SUBSTITUENTS = ("C", "CC", "O", "N", "Cl", "F", "OC", "CN", "C(=O)O", "CCC", "S", "CO")


def write_structures(path: Path, drugs: list[str], drug_module: np.ndarray, seed: int) -> None:
    """Write a ``drug_structures.tsv`` whose SMILES plant the modules: drugs of one module share a ring
    system and differ in two substituents, so structurally similar drugs act alike (also the two drugs
    without a known target). Uses its own random stream, so the rest of the benchmark is unchanged."""
    rng = np.random.default_rng(seed + 7919)
    rows = []
    for d, m in zip(drugs, drug_module, strict=True):
        a, b = rng.choice(len(_SUBSTITUENTS), size=2)
        smiles = f"{_SUBSTITUENTS[a]}{_SCAFFOLDS[int(m) % len(_SCAFFOLDS)]}{_SUBSTITUENTS[b]}"
        rows.append((d, f"drug {d}", "small molecule", "approved", "", "", smiles))
    cols = ["drugbank_id", "name", "type", "groups", "inchikey", "inchi", "smiles_rdkit_from_inchi"]
    pd.DataFrame(rows, columns=cols).to_csv(path, sep="\t", index=False)


@keyword_options
def write_synthetic(
    out_dir: str | Path,
    *,
    seed: int = 0,
    cell_lines: tuple[str, ...] = ("synth_a", "synth_b"),
    n_genes: int = 400,
    n_modules: int = 12,
    n_drugs: int = 60,
    readouts_per_perturbation: int = 100,
    test_fraction: float = 0.25,
) -> SyntheticPaths:
    """Generate a synthetic benchmark and knowledge graph under ``out_dir``.

    Writes ``out_dir/data/{line}-de.csv``, ``{line}-dir.csv`` (PerturbQA format), ``drugs-de.csv`` /
    ``drugs-dir.csv`` (drug perturbations named ``DB9xxxx``), ``out_dir/kg/`` with ``go_annotations.tsv``,
    ``go_terms.tsv``, ``go_parents.tsv``, ``gene_network.tsv``, ``reactome_pathways.gmt`` and
    ``drug_targets.tsv``, and ``out_dir/lincs/`` with the drugs' full signatures in the LINCS consensus format
    (``consensi-drugbank-binary.tsv``: perturbagen, entrez_gene_id, z_score, direction; ``genes.tsv``: the
    gene universe with ids and symbols). The last two drugs have no known target (they test the fallback);
    ``drug_structures.tsv`` gives every drug a SMILES whose ring system follows its module.

    Args:
        out_dir: Output directory (created).
        seed: Seed; the output is a deterministic function of all arguments.
        cell_lines: Names of the genetic-perturbation cell lines to generate.
        n_genes: Number of genes (every gene is both perturbed and read out).
        n_modules: Number of functional modules.
        n_drugs: Number of drug perturbations in the drug dataset.
        readouts_per_perturbation: Readout genes observed per perturbation (a random subset of the genes).
        test_fraction: Fraction of perturbations held out as unseen test perturbations.
    """
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    data_dir, kg_dir = out / "data", out / "kg"
    data_dir.mkdir(parents=True, exist_ok=True)
    kg_dir.mkdir(parents=True, exist_ok=True)
    genes = np.array([f"G{i:04d}" for i in range(n_genes)])
    module = _module_of(n_genes, n_modules, rng)

    # --- knowledge graph -------------------------------------------------------------------------
    terms, parents, ann = [("GO:9000000", "biological_process", "BP")], [], []
    for m in range(n_modules):
        parent = f"GO:91{m:05d}"
        terms.append((parent, f"module {m} process", "BP"))
        parents.append((parent, "GO:9000000", "isa", "BP"))
        for k in range(3):
            child = f"GO:92{m:03d}{k:02d}"
            terms.append((child, f"module {m} subprocess {k}", "BP"))
            parents.append((child, parent, "isa", "BP"))
        terms.append((f"GO:93{m:05d}", f"module {m} complex", "CC"))
    noise_terms = [f"GO:94{j:05d}" for j in range(40)]
    terms += [(t, f"noise term {t[-2:]}", "BP") for t in noise_terms]
    for i, g in enumerate(genes):
        ann.append((g, "GO:9000000", "P", "IEA"))
        m = module[i]
        if m >= 0:
            for k in range(3):
                if rng.random() < 0.45:
                    ann.append((g, f"GO:92{m:03d}{k:02d}", "P", "IDA"))
            if rng.random() < 0.5:
                ann.append((g, f"GO:93{m:05d}", "C", "IDA"))
        for t in rng.choice(noise_terms, size=2, replace=False):
            ann.append((g, str(t), "P", "IEA"))
    pd.DataFrame(ann, columns=["gene", "go_id", "aspect", "evidence"]).drop_duplicates(
        ["gene", "go_id"]
    ).to_csv(kg_dir / "go_annotations.tsv", sep="\t", index=False)
    pd.DataFrame(terms, columns=["go_id", "name", "aspect"]).to_csv(
        kg_dir / "go_terms.tsv", sep="\t", index=False
    )
    pd.DataFrame(parents, columns=["child", "parent", "relation", "aspect"]).to_csv(
        kg_dir / "go_parents.tsv", sep="\t", index=False
    )
    edges = []
    for i in range(n_genes):
        for j in range(i + 1, n_genes):
            same = module[i] >= 0 and module[i] == module[j]
            if rng.random() < (0.15 if same else 0.004):
                edges.append((genes[i], genes[j]))
    pd.DataFrame(edges, columns=["gene_a", "gene_b"]).to_csv(
        kg_dir / "gene_network.tsv", sep="\t", index=False
    )
    with (kg_dir / "reactome_pathways.gmt").open("w") as fh:
        for m in range(n_modules):
            members = [g for g, mm in zip(genes, module, strict=True) if mm == m and rng.random() < 0.6]
            members += list(rng.choice(genes, size=3, replace=False))
            fh.write(f"Module-{m}-pathway\tR-SYN-{m:04d}\t" + "\t".join(members) + "\n")
    drugs = [f"DB9{d:04d}" for d in range(n_drugs)]
    drug_module = rng.integers(0, n_modules, size=n_drugs)
    dt = []
    for d, m in zip(drugs[:-2], drug_module[:-2], strict=True):
        members = genes[module == m]
        for g in rng.choice(members, size=min(len(members), int(rng.integers(1, 4))), replace=False):
            dt.append((d, f"drug {d}", g))
    pd.DataFrame(dt, columns=["drugbank_id", "drug_name", "gene_target"]).to_csv(
        kg_dir / "drug_targets.tsv", sep="\t", index=False
    )
    write_structures(kg_dir / "drug_structures.tsv", drugs, drug_module, seed)

    # --- labels ---------------------------------------------------------------------------------
    def simulate(
        perts: np.ndarray,
        pert_module: np.ndarray,
        line_seed: int,
        n_observed: int = readouts_per_perturbation,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        r = np.random.default_rng(line_seed)
        base = r.beta(1.0, 12.0, size=n_genes)  # gene-specific base DE rates
        programme = np.zeros((n_modules, n_genes))
        sign = np.where(r.random((n_modules, n_genes)) < 0.5, 1, 0)
        for m in range(n_modules):
            targets = r.choice(n_genes, size=n_genes // 10, replace=False)
            programme[m, targets] = r.uniform(0.5, 0.9, size=len(targets))
        strength = r.uniform(0.5, 1.0, size=len(perts))
        order = r.permutation(len(perts))
        n_test = max(1, round(test_fraction * len(perts)))
        split = np.empty(len(perts), dtype=object)
        split[order[:n_test]] = "test"
        split[order[n_test:]] = "train"
        de_rows, dir_rows = [], []
        for i, p in enumerate(perts):
            m = pert_module[i]
            prob = base.copy()
            if m >= 0:
                prob = 1 - (1 - prob) * (1 - strength[i] * programme[m])
            de = r.random(n_genes) < prob
            observed = r.choice(n_genes, size=min(n_genes, n_observed), replace=False)
            for j in observed:
                de_rows.append((p, genes[j], int(de[j]), split[i]))
            for j in observed[de[observed]]:
                s = sign[m, j] if m >= 0 else int(r.random() < 0.5)
                if r.random() < 0.1:
                    s = 1 - s
                dir_rows.append((p, genes[j], int(s), split[i]))
        cols = ["pert", "gene", "label", "split"]
        return pd.DataFrame(de_rows, columns=cols), pd.DataFrame(dir_rows, columns=cols)

    for k, line in enumerate(cell_lines):
        de, dr = simulate(genes, module, seed * 1000 + k + 1)
        de.to_csv(data_dir / f"{line}-de.csv", index=False)
        dr.to_csv(data_dir / f"{line}-dir.csv", index=False)
    # each perturbation is asked about a random sample of genes whatever their labels: rates are the genome's
    (data_dir / DESIGN_FILE).write_text(json.dumps({"kind": "uniform"}) + "\n")
    de, dr = simulate(np.array(drugs), drug_module, seed * 1000 + 999)
    de.to_csv(data_dir / "drugs-de.csv", index=False)
    dr.to_csv(data_dir / "drugs-dir.csv", index=False)
    # the same kind of drugs as full signatures (every gene measured), in the LINCS consensus format
    lincs_dir = out / "lincs"
    lincs_dir.mkdir(parents=True, exist_ok=True)
    entrez = {g: str(10000 + i) for i, g in enumerate(genes)}
    pd.DataFrame(
        {"entrez_gene_id": [entrez[g] for g in genes], "status": "measured", "symbol": genes}
    ).to_csv(lincs_dir / "genes.tsv", sep="\t", index=False)
    _de_all, dir_all = simulate(np.array(drugs), drug_module, seed * 1000 + 998, n_observed=n_genes)
    sig = dir_all.rename(columns={"pert": "perturbagen"})
    zr = np.random.default_rng(seed + 7)
    z = zr.uniform(2.0, 8.0, size=len(sig)) * np.where(sig["label"] == 1, 1, -1)
    pd.DataFrame(
        {
            "perturbagen": sig["perturbagen"],
            "entrez_gene_id": sig["gene"].map(entrez),
            "z_score": np.round(z, 3),
            "direction": np.where(sig["label"] == 1, "up", "down"),
        }
    ).to_csv(lincs_dir / "consensi-drugbank-binary.tsv", sep="\t", index=False)
    return SyntheticPaths(data_dir=data_dir, kg_dir=kg_dir, cell_lines=tuple(cell_lines), lincs_dir=lincs_dir)
