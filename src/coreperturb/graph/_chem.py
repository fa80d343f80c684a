"""Compounds related by chemical structure: Morgan (ECFP-like) fingerprints from SMILES, compared by Tanimoto.

RDKit is an optional dependency (``pip install 'coreperturb[chem]'``), imported only when a structure source
is built. Invalid SMILES are counted and named in one warning, never a crash: such a compound simply has no
structure (it keeps its targets, if any).
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coreperturb.errors import KnowledgeGraphError

log = logging.getLogger(__name__)

CHEM_HINT = "pip install 'coreperturb[chem]'  (RDKit)"
STRUCTURE_RELATION = "structure"
ID_COLUMNS = ("id", "compound", "compound_id", "drugbank_id", "perturbation", "pert", "drug")
SMILES_COLUMNS = ("smiles", "canonical_smiles", "smiles_rdkit_from_inchi", "isomeric_smiles")
NAME_COLUMNS = ("name", "drug_name", "compound_name")


class StructureWarning(UserWarning):
    """Some SMILES of a structure table could not be parsed (the compounds are named)."""


@dataclass(frozen=True)
class MorganParams:
    """Morgan fingerprint settings: ``radius`` 2 and 2,048 bits is ECFP4 as usually used for similarity."""

    radius: int = 2
    n_bits: int = 2048


def rdkit_available() -> bool:
    """Whether RDKit can be imported."""
    try:
        import rdkit  # noqa: F401
    except ImportError:
        return False
    return True


def _rdkit() -> tuple[ModuleType, Any, Any]:
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdFingerprintGenerator
    except ImportError as exc:
        raise KnowledgeGraphError(
            f"relating compounds by chemical structure needs RDKit, which is not installed: {CHEM_HINT}"
        ) from exc
    return Chem, RDLogger, rdFingerprintGenerator


@dataclass(frozen=True)
class StructureTable:
    """Fingerprints read from one structure table.

    Attributes:
        bits: Compound id → sorted on-bit positions of its Morgan fingerprint.
        names: Compound id → display name (when the table has a name column).
        invalid: ``(line, id, smiles)`` of every SMILES RDKit could not parse.
        missing: Number of compounds listed without a SMILES (biologics, mixtures).
    """

    bits: dict[str, np.ndarray]
    names: dict[str, str]
    invalid: list[tuple[int, str, str]]
    missing: int


def fingerprint_bits(
    smiles: Sequence[str], params: MorganParams | None = None
) -> tuple[list[np.ndarray | None], list[int]]:
    """Morgan fingerprint on-bits of each SMILES (``None`` and its position listed when it does not parse)."""
    params = params or MorganParams()
    chem, rdlogger, gen_mod = _rdkit()
    gen = gen_mod.GetMorganGenerator(radius=params.radius, fpSize=params.n_bits)
    out: list[np.ndarray | None] = []
    bad: list[int] = []
    rdlogger.DisableLog("rdApp.*")  # RDKit prints every parse error to stderr; we report them once
    try:
        for i, s in enumerate(smiles):
            mol = chem.MolFromSmiles(s) if s else None
            if mol is None:
                out.append(None)
                bad.append(i)
                continue
            out.append(np.flatnonzero(gen.GetFingerprintAsNumPy(mol)).astype(np.int32))
    finally:
        rdlogger.EnableLog("rdApp.*")
    return out, bad


def _pick(columns: Iterable[str], wanted: Sequence[str]) -> str | None:
    low = {str(c).lower(): str(c) for c in columns}
    return next((low[w] for w in wanted if w in low), None)


def read_structure_table(path: str | Path, params: MorganParams | None = None) -> StructureTable:
    """Read a compound structure table (CSV or TSV: an id column and a SMILES column) into fingerprints.

    Column names are matched case-insensitively: id from ``id, compound, compound_id, drugbank_id,
    perturbation, pert, drug``; SMILES from ``smiles, canonical_smiles, smiles_rdkit_from_inchi,
    isomeric_smiles``; an optional name from ``name, drug_name, compound_name``. Rows without a SMILES are
    counted; SMILES that do not parse are named in one :class:`StructureWarning`.

    Raises:
        KnowledgeGraphError: The file is missing or unreadable, lacks an id / SMILES column, or repeats an id
            with different SMILES (file, line and column named).
    """
    path = Path(path)
    if not path.exists():
        raise KnowledgeGraphError(f"{path}: structure table not found")
    sep = "\t" if path.suffix.lower() in {".tsv", ".tab", ".txt"} else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise KnowledgeGraphError(
            f"{path}: cannot be read as a {'TSV' if sep == chr(9) else 'CSV'}: {exc}"
        ) from None
    id_col, smi_col = _pick(df.columns, ID_COLUMNS), _pick(df.columns, SMILES_COLUMNS)
    if id_col is None or smi_col is None:
        miss = [k for k, c in (("id", id_col), ("SMILES", smi_col)) if c is None]
        raise KnowledgeGraphError(
            f"{path}: no {' or '.join(miss)} column (looked for {ID_COLUMNS if id_col is None else SMILES_COLUMNS}); "
            f"columns present: {list(df.columns)}"
        )
    ids = df[id_col].str.strip()
    smiles = df[smi_col].str.strip()
    blank_id = np.flatnonzero((ids == "").to_numpy())
    if blank_id.size:
        raise KnowledgeGraphError(f"{path}: line {int(blank_id[0]) + 2}, column {id_col!r}: empty id")
    has = (smiles != "").to_numpy()
    dup = ids[has].duplicated(keep=False)
    if dup.any():
        sub = df.loc[has][dup.to_numpy()]
        for key, grp in sub.groupby(id_col, sort=False):
            if grp[smi_col].str.strip().nunique() > 1:
                raise KnowledgeGraphError(
                    f"{path}: line {int(grp.index[1]) + 2}, column {id_col!r}: id {key!r} is listed again with "
                    "a different SMILES"
                )
    name_col = _pick(df.columns, NAME_COLUMNS)
    names = {i: n for i, n in zip(ids, df[name_col].str.strip(), strict=True) if n} if name_col else {}
    rows = np.flatnonzero(has)
    fps, bad = fingerprint_bits(list(smiles.iloc[rows]), params)
    bits = {str(ids.iat[int(r)]): fp for r, fp in zip(rows, fps, strict=True) if fp is not None}
    invalid = [(int(rows[b]) + 2, str(ids.iat[rows[b]]), str(smiles.iat[rows[b]])) for b in bad]
    if invalid:
        shown = ", ".join(f"{i} (line {ln})" for ln, i, _ in invalid[:5])
        more = f" and {len(invalid) - 5} more" if len(invalid) > 5 else ""
        warnings.warn(
            f"{path}: {len(invalid)} SMILES could not be parsed by RDKit and were left out: {shown}{more}",
            StructureWarning,
            stacklevel=2,
        )
    log.info(
        "%s: %d structures, %d without SMILES, %d invalid", path, len(bits), int((~has).sum()), len(invalid)
    )
    return StructureTable(bits=bits, names=names, invalid=invalid, missing=int((~has).sum()))


def structure_matrix(bits: dict[str, np.ndarray], n_bits: int) -> tuple[pd.Index, sp.csr_matrix]:
    """``(ids, compounds × bits binary CSR)`` from fingerprints, ids sorted."""
    ids = pd.Index(sorted(bits), dtype=object)
    lens = np.array([len(bits[i]) for i in ids], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lens)])
    indices = np.concatenate([bits[i] for i in ids]) if len(ids) else np.array([], dtype=np.int32)
    m = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(ids), n_bits))
    return ids, m


__all__ = [
    "CHEM_HINT",
    "STRUCTURE_RELATION",
    "MorganParams",
    "StructureTable",
    "StructureWarning",
    "fingerprint_bits",
    "rdkit_available",
    "read_structure_table",
    "structure_matrix",
]
