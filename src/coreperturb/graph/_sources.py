"""Knowledge-graph sources, registered by name, and the builder that assembles a :class:`KnowledgeGraph`.

Built-in sources read the files of a KG directory (``go_annotations.tsv``, ``gene_network.tsv``, ...).
Users add their own with :func:`edge_list_source` (STRING-like TSV) and :func:`gmt_source` (GMT gene sets,
e.g. Reactome, MSigDB, Enrichr libraries).

This module runs over 500 lines because it holds every built-in KG source reader in one registry, each
with the file checks that name the file and line of a bad row.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coreperturb._deprecation import keyword_options
from coreperturb._registry import Registry
from coreperturb._util import positions
from coreperturb.errors import KnowledgeGraphError
from coreperturb.graph._chem import (
    CHEM_HINT,
    STRUCTURE_RELATION,
    MorganParams,
    rdkit_available,
    read_structure_table,
    structure_matrix,
)
from coreperturb.graph._kg import KnowledgeGraph, Relation, idf_weights, relation_from_pairs

log = logging.getLogger(__name__)


@dataclass
class SourceOutput:
    """What a source contributes: raw (gene, feature) pairs per relation and/or perturbation targets."""

    pairs: dict[str, tuple[str, np.ndarray, np.ndarray, dict[str, str]]] = field(default_factory=dict)
    """relation name → (kind, genes, features, feature labels)."""
    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    structures: dict[str, np.ndarray] = field(default_factory=dict)
    """compound id → Morgan fingerprint on-bits (all structure sources form one ``structure`` relation)."""


SourceFn = Callable[[Path], SourceOutput]


@dataclass(frozen=True)
class SourceInfo:
    """What the registry knows of a built-in KG source besides its function.

    Attributes:
        file: The file it reads inside the KG directory (checked before the source runs).
        use: ``default`` (used whenever its file exists), ``named`` (only when listed in ``--kg-sources``;
            it did not help in the train-only inner CV, ``benchmarks/kg_ablation.py``) or ``drugs`` (added when
            the dataset's perturbations are compounds with a structure in the file).
    """

    file: str
    use: str = "default"

    def __post_init__(self) -> None:
        if self.use not in ("default", "named", "drugs"):
            raise ValueError(f"KG source use {self.use!r}: expected default, named or drugs")


KG_SOURCES: Registry[SourceFn] = Registry("KG source")
"""The KG sources by name; built-in ones carry a :class:`SourceInfo` (``KG_SOURCES.info(name)``)."""


def _file(source: str) -> str:
    info = KG_SOURCES.info(source)
    assert isinstance(info, SourceInfo)
    return info.file


def _read_tsv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    if not path.exists():
        raise KnowledgeGraphError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise KnowledgeGraphError(f"{path}: cannot be parsed as TSV: {exc}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise KnowledgeGraphError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    return df


def go_closure(parents: pd.DataFrame, terms: pd.Index) -> sp.csr_matrix:
    """Reflexive-transitive closure of the GO DAG over ``is_a`` / ``part_of`` edges (terms × ancestors)."""
    rel = parents["relation"].str.replace("_", " ").isin(["isa", "is a", "part of"])
    ci = positions(terms, parents.loc[rel, "child"])
    pi = positions(terms, parents.loc[rel, "parent"])
    ok = (ci >= 0) & (pi >= 0)
    step = sp.csr_matrix((np.ones(int(ok.sum())), (ci[ok], pi[ok])), shape=(len(terms), len(terms)))
    reach = sp.identity(len(terms), format="csr")
    for _ in range(64):  # GO depth is < 20; the loop ends when nothing new is reached
        nxt = reach + reach @ step
        nxt.data[:] = 1.0
        if nxt.nnz == reach.nnz:
            break
        reach = sp.csr_matrix(nxt)
    return reach


@KG_SOURCES.register("go", SourceInfo("go_annotations.tsv"))
def go_source(kg_dir: Path, *, propagate: bool = True) -> SourceOutput:
    """GO annotations split by aspect (``go_bp``, ``go_mf``, ``go_cc``), propagated up the DAG.

    Reads ``go_annotations.tsv`` (gene, go_id, aspect, evidence); ``go_parents.tsv`` (child, parent,
    relation) for propagation and ``go_terms.tsv`` (go_id, name) for labels, when present. Annotations with
    evidence ``ND`` (no data) are ignored.
    """
    ann = _read_tsv(kg_dir / "go_annotations.tsv", ["gene", "go_id", "aspect"])
    if "evidence" in ann.columns:
        ann = ann[ann["evidence"] != "ND"]
    labels: dict[str, str] = {}
    if (kg_dir / "go_terms.tsv").exists():
        t = _read_tsv(kg_dir / "go_terms.tsv", ["go_id", "name"])
        labels = dict(zip(t["go_id"], t["name"], strict=True))
    out = SourceOutput()
    closure = None
    terms = pd.Index(pd.unique(ann["go_id"]))
    if propagate and (kg_dir / "go_parents.tsv").exists():
        par = _read_tsv(kg_dir / "go_parents.tsv", ["child", "parent", "relation"])
        terms = pd.Index(pd.unique(np.concatenate([terms.to_numpy(), par["child"], par["parent"]])))
        closure = go_closure(par, terms)
    names = {"P": "go_bp", "F": "go_mf", "C": "go_cc"}
    for aspect, name in names.items():
        a = ann[ann["aspect"].str.upper().str[:1] == aspect]
        if a.empty:
            continue
        genes = np.asarray(a["gene"], dtype=object)
        feats = np.asarray(a["go_id"], dtype=object)
        if closure is not None:
            gidx = pd.Index(pd.unique(genes))
            ti = positions(terms, feats)
            m = sp.csr_matrix((np.ones(len(ti)), (positions(gidx, genes), ti)), shape=(len(gidx), len(terms)))
            prop = sp.coo_matrix(m @ closure)
            genes = np.asarray(gidx[prop.row], dtype=object)
            feats = np.asarray(terms[prop.col], dtype=object)
        out.pairs[name] = ("annotation", genes, feats, labels)
    return out


def _network_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features of a network relation: each gene's neighbours plus itself (undirected)."""
    nodes = pd.unique(np.concatenate([a, b]))
    genes = np.concatenate([a, b, nodes])
    feats = np.concatenate([b, a, nodes])
    return genes, feats


_HEADER = re.compile(
    r"(gene|protein|node|symbol|source|target|interactor|partner|from|to|name|preferred_name)"
    r"([ _-]?[ab12]|[ _-]?(symbol|name|id)s?)?",
    re.IGNORECASE,
)


def _is_header(values: Sequence[str]) -> bool:
    """Whether the first line of an edge list is a header (``gene_a``, ``protein1``, ``source``, ...)."""
    return all(_HEADER.fullmatch(str(v).strip()) is not None for v in values)


def edge_list_source(path: str | Path, name: str | None = None) -> Callable[[Path], SourceOutput]:
    """A source for an undirected gene—gene edge list: the first two columns of a TSV (CSV for ``.csv``).

    A header line is optional: the first line is taken as a header when both of its first two fields look
    like column names (``gene_a``/``gene_b``, ``gene1``/``gene2``, ``protein1``/``protein2``,
    ``source``/``target``, ``from``/``to``, ``node1``/``node2``, ...); otherwise it is an edge.
    """
    path = Path(path)
    rel_name = name or path.stem

    def load(_: Path) -> SourceOutput:
        if not path.is_file():
            raise KnowledgeGraphError(f"{path}: file not found")
        sep = "," if path.suffix.lower() == ".csv" else "\t"
        try:
            df = pd.read_csv(
                path, sep=sep, header=None, dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE
            )
        except pd.errors.EmptyDataError:
            raise KnowledgeGraphError(f"{path}: the edge list is empty") from None
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise KnowledgeGraphError(f"{path}: cannot be parsed as an edge list: {exc}") from None
        if df.shape[1] < 2:
            raise KnowledgeGraphError(
                f"{path}: line 1: an edge list needs two gene columns "
                f"({'comma' if sep == ',' else 'tab'}-separated); found one"
            )
        df = df.iloc[:, :2].apply(lambda c: c.str.strip())
        first = 1
        if len(df) and _is_header(df.iloc[0].tolist()):
            df = df.iloc[1:]
            first = 2
        bad = (df == "").any(axis=1).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise KnowledgeGraphError(
                f"{path}: line {i + first}: needs two gene columns (found an empty one)"
            )
        if df.empty:
            raise KnowledgeGraphError(f"{path}: the edge list has no edges")
        g, f = _network_pairs(df.iloc[:, 0].to_numpy(dtype=object), df.iloc[:, 1].to_numpy(dtype=object))
        return SourceOutput(pairs={rel_name: ("network", g, f, {})})

    return load


@KG_SOURCES.register("gene_network", SourceInfo("gene_network.tsv"))
def gene_network_source(kg_dir: Path) -> SourceOutput:
    """The gene functional-interaction network ``gene_network.tsv`` (gene_a, gene_b) as relation ``network``."""
    df = _read_tsv(kg_dir / "gene_network.tsv", ["gene_a", "gene_b"])
    g, f = _network_pairs(df["gene_a"].to_numpy(dtype=object), df["gene_b"].to_numpy(dtype=object))
    return SourceOutput(pairs={"network": ("network", g, f, {})})


def read_gmt(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Read a GMT file (name, description/id, genes...) into (gene, set id) pairs and set labels."""
    path = Path(path)
    if not path.exists():
        raise KnowledgeGraphError(f"{path}: file not found")
    genes: list[str] = []
    sets: list[str] = []
    labels: dict[str, str] = {}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.rstrip("\n\r").split("\t")
            if not line.strip():
                continue
            if len(fields) < 3:
                raise KnowledgeGraphError(
                    f"{path}: line {lineno}: a GMT line needs a name, a description and at least one gene"
                )
            name, desc = fields[0], fields[1]
            sid = desc if desc.startswith(("R-", "GO:", "hsa")) else name
            labels[sid] = name
            for g in fields[2:]:
                g = g.split(",")[0].strip()  # Enrichr libraries may carry "GENE,weight"
                if g:
                    genes.append(g)
                    sets.append(sid)
    return np.asarray(genes, dtype=object), np.asarray(sets, dtype=object), labels


def gmt_source(path: str | Path, name: str | None = None) -> Callable[[Path], SourceOutput]:
    """A source for a GMT gene-set file (Reactome, MSigDB, Enrichr libraries, ...)."""
    path = Path(path)
    rel_name = name or path.stem

    def load(_: Path) -> SourceOutput:
        g, s, lab = read_gmt(path)
        return SourceOutput(pairs={rel_name: ("gene_set", g, s, lab)})

    return load


@KG_SOURCES.register("reactome", SourceInfo("reactome_pathways.gmt"))
def reactome_source(kg_dir: Path) -> SourceOutput:
    """Reactome pathways from ``reactome_pathways.gmt`` as relation ``reactome``."""
    return gmt_source(kg_dir / "reactome_pathways.gmt", "reactome")(kg_dir)


@KG_SOURCES.register("corum", SourceInfo("corum_core_complexes.tsv"))
def corum_source(kg_dir: Path) -> SourceOutput:
    """CORUM complexes (human) from ``corum_core_complexes.tsv`` as relation ``corum``. CC BY-NC 4.0 data."""
    df = _read_tsv(kg_dir / "corum_core_complexes.tsv", ["ComplexID", "subunits(Gene name)"])
    if "Organism" in df.columns:
        df = df[df["Organism"] == "Human"]
    subunits = df["subunits(Gene name)"].str.split(";")
    ex = pd.DataFrame({"complex": df["ComplexID"], "gene": subunits}).explode("gene")
    ex["gene"] = ex["gene"].str.strip()
    ex = ex[(ex["gene"] != "") & ex["gene"].notna() & (ex["gene"] != "None")]
    labels = dict(zip(df["ComplexID"], df.get("ComplexName", df["ComplexID"]), strict=True))
    return SourceOutput(
        pairs={
            "corum": (
                "gene_set",
                ex["gene"].to_numpy(dtype=object),
                ex["complex"].to_numpy(dtype=object),
                labels,
            )
        }
    )


@KG_SOURCES.register("drug_targets", SourceInfo("drug_targets.tsv"))
def drug_targets_source(kg_dir: Path) -> SourceOutput:
    """Drug → target genes from ``drug_targets.tsv`` (drugbank_id, drug_name, gene_target)."""
    df = _read_tsv(kg_dir / "drug_targets.tsv", ["drugbank_id", "gene_target"])
    df = df[df["gene_target"] != ""]
    targets = {str(k): tuple(map(str, pd.unique(v))) for k, v in df.groupby("drugbank_id")["gene_target"]}
    names = dict(zip(df["drugbank_id"], df["drug_name"], strict=False)) if "drug_name" in df.columns else {}
    return SourceOutput(targets=targets, names=names)


STRING_FAMILIES: dict[str, tuple[str, ...]] = {
    "experiments": ("experiments", "experiments_transferred"),
    "database": ("database", "database_transferred"),
    "coexpression": ("coexpression", "coexpression_transferred"),
}


def _numeric(df: pd.DataFrame, cols: Sequence[str], path: Path) -> pd.DataFrame:
    """Columns as numbers; the first non-numeric value stops with its file, line and column."""
    out = pd.DataFrame(index=df.index)
    for c in cols:
        v = pd.to_numeric(df[c], errors="coerce")
        bad = v.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise KnowledgeGraphError(f"{path}: line {i + 2}, column {c!r}: {df[c].iat[i]!r} is not a number")
        out[c] = v
    return out


# KG release 2: STRING's experiments / curated / co-expression channels help in the train-only inner CV
# (benchmarks/kg_ablation.py: +0.014 DE, +0.015 direction), so they are a default source
@KG_SOURCES.register("string", SourceInfo("string_v12_edges.tsv"))
def string_source(
    kg_dir: Path, min_score: float = 400, families: Sequence[str] = tuple(STRING_FAMILIES)
) -> SourceOutput:
    """STRING v12 (``string_v12_edges.tsv``) as one network relation per evidence family.

    ``string_experiments``, ``string_database`` (curated pathways / complexes) and ``string_coexpression``:
    an edge enters a family when the larger of its direct and transferred sub-scores is at least
    ``min_score`` (STRING's 0–1000 scale; 400 = "medium confidence"). Text mining is not in the file.
    """
    path = kg_dir / _file("string")
    cols = [c for f in families for c in STRING_FAMILIES[f]]
    df = _read_tsv(path, ["gene_a", "gene_b", *cols])
    scores = _numeric(df, cols, path)
    out = SourceOutput()
    for fam in families:
        keep = (scores[list(STRING_FAMILIES[fam])].max(axis=1) >= min_score).to_numpy()
        g, f = _network_pairs(
            df.loc[keep, "gene_a"].to_numpy(dtype=object), df.loc[keep, "gene_b"].to_numpy(dtype=object)
        )
        out.pairs[f"string_{fam}"] = ("network", g, f, {})
    return out


@KG_SOURCES.register("coessentiality", SourceInfo("coessentiality_edges.tsv", "named"))
def coessentiality_source(kg_dir: Path) -> SourceOutput:
    """DepMap co-essentiality partners (``coessentiality_edges.tsv``) as network relation ``coessentiality``."""
    df = _read_tsv(kg_dir / _file("coessentiality"), ["gene_a", "gene_b"])
    g, f = _network_pairs(df["gene_a"].to_numpy(dtype=object), df["gene_b"].to_numpy(dtype=object))
    return SourceOutput(pairs={"coessentiality": ("network", g, f, {})})


@KG_SOURCES.register("huri", SourceInfo("huri_edges.tsv", "named"))
def huri_source(kg_dir: Path) -> SourceOutput:
    """HuRI + Lit-BM binary protein interactions (``huri_edges.tsv``) as network relation ``huri``."""
    df = _read_tsv(kg_dir / _file("huri"), ["gene_a", "gene_b"])
    g, f = _network_pairs(df["gene_a"].to_numpy(dtype=object), df["gene_b"].to_numpy(dtype=object))
    return SourceOutput(pairs={"huri": ("network", g, f, {})})


@KG_SOURCES.register("dorothea", SourceInfo("dorothea_regulons.tsv", "named"))
def dorothea_source(kg_dir: Path, confidence: str = "ABC") -> SourceOutput:
    """DoRothEA signed TF→target regulons (``dorothea_regulons.tsv``: tf, confidence, target, mor).

    Two directed, signed relations, for the regulons of the given ``confidence`` levels (A–E; A–C is the
    usual high-confidence set): ``dorothea_regulators`` gives every target gene its regulators with their
    sign (``TF+`` activates it, ``TF-`` represses it), so co-regulated genes are similar;
    ``dorothea_targets`` gives every TF its signed targets, so TFs with the same targets are similar.

    Raises:
        KnowledgeGraphError: A confidence letter outside A–E or a mode of regulation that is not ±1 (file,
            line and column named).
    """
    path = kg_dir / _file("dorothea")
    levels = {c.strip().upper() for c in confidence if c.strip()}
    if not levels or not levels <= set("ABCDE"):
        raise KnowledgeGraphError(f"dorothea confidence levels must be letters A-E, got {confidence!r}")
    df = _read_tsv(path, ["tf", "confidence", "target", "mor"])
    conf = df["confidence"].str.strip().str.upper()
    bad = ~conf.isin(list("ABCDE"))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise KnowledgeGraphError(
            f"{path}: line {i + 2}, column 'confidence': {df['confidence'].iat[i]!r} is not one of A-E"
        )
    mor = _numeric(df, ["mor"], path)["mor"]
    bad = ~mor.isin([-1, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise KnowledgeGraphError(f"{path}: line {i + 2}, column 'mor': {df['mor'].iat[i]!r} is not 1 or -1")
    keep = conf.isin(list(levels)).to_numpy()
    tf = df.loc[keep, "tf"].to_numpy(dtype=object)
    target = df.loc[keep, "target"].to_numpy(dtype=object)
    sign = np.where(mor[keep].to_numpy() > 0, "+", "-").astype(object)
    return SourceOutput(
        pairs={
            "dorothea_regulators": ("annotation", target, tf + sign, {}),
            "dorothea_targets": ("annotation", tf, target + sign, {}),
        }
    )


STRUCTURE_FILE = "drug_structures.tsv"


@KG_SOURCES.register("drug_structures", SourceInfo(STRUCTURE_FILE, "drugs"))
def drug_structures_source(kg_dir: Path, params: MorganParams | None = None) -> SourceOutput:
    """Chemical structures of compounds (``drug_structures.tsv``: drugbank_id, name, ...,
    smiles_rdkit_from_inchi) as Morgan fingerprints: drugs are related by Tanimoto similarity, so a drug
    without a known target still has KG information. Needs RDKit (``coreperturb[chem]``)."""
    table = read_structure_table(kg_dir / STRUCTURE_FILE, params or MorganParams())
    return SourceOutput(names=table.names, structures=table.bits)


def structure_table_source(path: str | Path) -> Callable[[Path], SourceOutput]:
    """A user's compound structure table (CSV / TSV with an id and a SMILES column) as a KG source; its
    compounds join the ``structure`` relation (a compound listed again replaces the built-in structure)."""

    def fn(_: Path) -> SourceOutput:
        table = read_structure_table(path)
        return SourceOutput(names=table.names, structures=table.bits)

    return fn


def structure_ids(kg_dir: str | Path) -> set[str]:
    """The compound ids with a SMILES in ``kg_dir``'s ``drug_structures.tsv`` (empty when it is absent)."""
    path = Path(kg_dir) / STRUCTURE_FILE
    if not path.exists():
        return set()
    df = _read_tsv(path, ["drugbank_id", "smiles_rdkit_from_inchi"])
    return set(df.loc[df["smiles_rdkit_from_inchi"].str.strip() != "", "drugbank_id"].astype(str))


def available_sources(kg_dir: str | Path, entities: Iterable[str] = ()) -> list[str]:
    """The default sources for ``kg_dir`` and a dataset naming ``entities`` (its genes and perturbations).

    Every default built-in source whose file is present; ``drug_structures`` too when some of ``entities``
    are compounds with a structure in it (a drug dataset) and RDKit is installed (otherwise a warning with the
    install hint). Optional sources are never included: name them, e.g. ``--kg-sources
    go,gene_network,reactome,corum,drug_targets,string,dorothea``.
    """
    kg_dir = Path(kg_dir)
    out = [s for s, f in SOURCE_FILES.items() if (kg_dir / f).exists()]  # registration order
    names = set(map(str, entities))
    if names and (kg_dir / STRUCTURE_FILE).exists():
        n = len(names & structure_ids(kg_dir))
        if n and rdkit_available():
            out.append("drug_structures")
        elif n:
            log.warning(
                "%d perturbations have a chemical structure in %s, but RDKit is not installed, so drugs are "
                "related only through their targets: %s",
                n,
                kg_dir / STRUCTURE_FILE,
                CHEM_HINT,
            )
    return out


@keyword_options
def build_kg(
    kg_dir: str | Path | None,
    sources: Sequence[str] | None = None,
    *,
    extra: Iterable[Callable[[Path], SourceOutput]] = (),
    extra_genes: Iterable[str] = (),
    hub_cap: float = 0.25,
) -> KnowledgeGraph:
    """Assemble a knowledge graph from registered sources.

    Args:
        kg_dir: Directory holding the built-in source files.
        sources: Names from :data:`KG_SOURCES`; ``None`` means every built-in source whose file exists.
        extra: Additional source callables (see :func:`edge_list_source`, :func:`gmt_source`).
        extra_genes: Genes to include in the universe even if no source mentions them.
        hub_cap: Drop features attached to more than this fraction of genes (hub handling).

    Returns:
        The knowledge graph.
    """
    path = Path(kg_dir) if kg_dir is not None else Path(".")
    if kg_dir is not None and not path.is_dir():
        raise KnowledgeGraphError(f"{path}: KG directory not found")
    extra_genes = list(extra_genes)
    names = (
        list(sources)
        if sources is not None
        else (available_sources(path, extra_genes) if kg_dir is not None else [])
    )
    outputs: list[SourceOutput] = []
    for name in names:
        fn = KG_SOURCES.get(name)
        info = KG_SOURCES.info(name)
        need = info.file if isinstance(info, SourceInfo) else None  # a user's source checks its own files
        if need is not None and not (path / need).exists():
            raise KnowledgeGraphError(f"{path / need}: file for KG source {name!r} not found")
        outputs.append(fn(path))
    outputs.extend(fn(path) for fn in extra)
    mentioned = [genes for out in outputs for _, genes, _, _ in out.pairs.values()]
    # IDF and the hub cut refer to the genes the sources mention, never to extra_genes: otherwise the
    # weights (and every model) would depend on which datasets happened to be loaded beside the KG
    source_genes = pd.unique(np.concatenate(mentioned)) if mentioned else np.array([], dtype=object)
    n_sources = int(source_genes.size)
    universe = np.concatenate([np.asarray(list(extra_genes), dtype=object), source_genes])
    genes_index = pd.Index(sorted(map(str, pd.unique(universe))))
    relations: dict[str, Relation] = {}
    targets: dict[str, tuple[str, ...]] = {}
    disp: dict[str, str] = {}
    structures: dict[str, np.ndarray] = {}
    for out in outputs:
        structures.update(out.structures)
        for rname, (kind, genes, feats, labels) in out.pairs.items():
            if rname in relations:
                raise KnowledgeGraphError(f"two KG sources define relation {rname!r}")
            cap = None if kind == "network" else hub_cap
            build = partial(relation_from_pairs, labels=labels, hub_cap=cap, n_universe=n_sources)
            relations[rname] = build(rname, kind, genes_index, genes, feature_col=feats)
        targets.update(out.targets)
        disp.update(out.names)
    if structures:
        ids, m = structure_matrix(structures, MorganParams().n_bits)
        bits = np.asarray([f"morgan{b}" for b in range(m.shape[1])], dtype=object)
        relations[STRUCTURE_RELATION] = Relation(STRUCTURE_RELATION, "structure", m, bits, bits, row_ids=ids)
    if not relations:
        raise KnowledgeGraphError(f"{path}: no KG relation could be built (sources: {names or 'none'})")
    for r in relations.values():
        log.info(
            "KG relation %s: %d %s, %d features",
            r.name,
            (r.matrix.getnnz(axis=1) > 0).sum(),
            "compounds" if r.row_ids is not None else "genes",
            r.n_features,
        )
    return KnowledgeGraph(genes=genes_index, relations=relations, targets=targets, names=disp)


def build_kg_from_recipe(recipe: dict[str, Any]) -> KnowledgeGraph:
    """Build the KG a recipe describes: ``kg_dir`` and ``sources`` (built-in sources; ``None`` = the defaults
    of :func:`available_sources`), ``edges`` / ``gmt`` (lists of ``[name, path]`` user files), ``structures``
    (user compound structure tables) and ``extra_genes``."""
    extra: list[Callable[[Path], SourceOutput]] = [edge_list_source(p, n) for n, p in recipe.get("edges", [])]
    extra += [gmt_source(p, n) for n, p in recipe.get("gmt", [])]
    extra += [structure_table_source(p) for p in recipe.get("structures", [])]
    return build_kg(
        recipe.get("kg_dir"),
        recipe.get("sources"),
        extra=extra,
        extra_genes=recipe.get("extra_genes", ()),
    )


def _files(use: str) -> dict[str, str]:
    return {
        n: info.file
        for n in KG_SOURCES.in_order()
        if isinstance(info := KG_SOURCES.info(n), SourceInfo) and info.use == use
    }


SOURCE_FILES: dict[str, str] = _files("default")
"""The file each default source reads (derived from the registry, in registration order)."""
OPTIONAL_SOURCE_FILES: dict[str, str] = _files("named")
"""The file each source used only when named reads (derived from the registry)."""

__all__ = [
    "KG_SOURCES",
    "OPTIONAL_SOURCE_FILES",
    "STRING_FAMILIES",
    "SourceInfo",
    "SourceOutput",
    "available_sources",
    "build_kg",
    "build_kg_from_recipe",
    "coessentiality_source",
    "dorothea_source",
    "drug_structures_source",
    "edge_list_source",
    "gmt_source",
    "go_closure",
    "huri_source",
    "idf_weights",
    "read_gmt",
    "string_source",
    "structure_ids",
    "structure_table_source",
]
