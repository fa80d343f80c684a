"""The biology a prediction must respect: the perturbation's modality, the genes it can reach, the cell line's
sex, and a human gene annotation (symbol, chromosome, locus type) that works offline.

The annotation ships with the package (``hs_genes.tsv.gz``, 77,547 symbols: NCBI Gene's, plus the HGNC ``MT-`` names of the 37 mitochondrially encoded genes): it is derived from
Bioconductor's ``org.Hs.eg.db`` 3.16.0 (Artistic-2.0; NCBI Gene of 2022-09-12) by
``scripts/make_gene_annotation.py``. A gene on several chromosomes (the pseudo-autosomal genes of X and Y)
lists them all.

Modalities (:data:`MODALITIES`):

- ``crispri`` (the default for genetic screens, PerturbQA's), ``knockout``: the target gene goes down;
- ``crispra``: the target gene goes up;
- ``drug``: no on-target rule (the default for compound data).

A CRISPR modality acts on the nuclear genome: genes encoded in the mitochondrial genome (``MT``) cannot be
targeted. A cell line recorded as female (:data:`KNOWN_SEX`, or the user's ``--cell-line-sex``) has no
chromosome Y: genes found only on Y are not offered as candidates there.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import numpy as np
import pandas as pd

from coreperturb.errors import ConfigError


@dataclass(frozen=True)
class Modality:
    """What a kind of perturbation does to its own target.

    Attributes:
        name: ``crispri``, ``crispra``, ``knockout`` or ``drug``.
        on_target: ``down`` / ``up``: a gene perturbation's own target, where it is a readout, is DE in this
            direction; ``None``: no rule (drugs).
        genomic: Acts on the nuclear genome (CRISPR): mitochondrially encoded genes cannot be targeted.
    """

    name: str
    on_target: str | None
    genomic: bool


MODALITIES: dict[str, Modality] = {
    "crispri": Modality("crispri", "down", genomic=True),
    "knockout": Modality("knockout", "down", genomic=True),
    "crispra": Modality("crispra", "up", genomic=True),
    "drug": Modality("drug", None, genomic=False),
}
DEFAULT_MODALITY = {"perturbqa": "crispri", "lincs": "drug"}
"""The modality of a dataset when ``--modality`` is not given (own query tables: ``crispri``)."""

KNOWN_SEX: dict[str, str] = {"k562": "female", "rpe1": "female", "hepg2": "male", "jurkat": "male"}
"""Donor sex of common lines (K562: a 53-year-old woman; hTERT-RPE1: a 1-year-old girl; HepG2: a 15-year-old
boy; Jurkat: a 14-year-old boy). Other lines: unknown (chromosome-Y genes stay candidates) unless set."""
SEXES = ("female", "male")


def modality(name: str) -> Modality:
    """The registered :class:`Modality` ``name``.

    Raises:
        ConfigError: Unknown name, naming the known ones.
    """
    m = MODALITIES.get(str(name).lower())
    if m is None:
        raise ConfigError(f"unknown modality {name!r}; choose from {', '.join(MODALITIES)}")
    return m


def parse_sexes(entries: Iterable[str]) -> dict[str, str]:
    """``LINE=female|male`` entries as a mapping (line names lower-cased).

    Raises:
        ConfigError: An entry that is not ``LINE=female`` or ``LINE=male``.
    """
    out: dict[str, str] = {}
    for entry in entries:
        line, sep, sex = str(entry).partition("=")
        if not sep or not line.strip() or sex.strip().lower() not in SEXES:
            raise ConfigError(f"cell-line sex {entry!r}: expected LINE=female or LINE=male")
        out[line.strip().lower()] = sex.strip().lower()
    return out


def line_sex(cell_line: str, overrides: Iterable[str] = ()) -> str | None:
    """``female`` / ``male`` for a line (the user's setting first, then :data:`KNOWN_SEX`), else ``None``."""
    key = str(cell_line).lower()
    return parse_sexes(overrides).get(key) or KNOWN_SEX.get(key)


ANNOTATION_FILE = "hs_genes.tsv.gz"
"""The shipped annotation, inside the ``coreperturb.data`` package (made by ``scripts/``)."""


def _annotation() -> Traversable:
    return resources.files("coreperturb.data").joinpath(ANNOTATION_FILE)


@functools.cache
def gene_annotation() -> pd.DataFrame:
    """The shipped human gene annotation: index ``symbol``; columns ``chromosome`` (``;``-joined where a gene
    lies on several) and ``locus_type`` (``protein-coding``, ``ncRNA``, ``pseudo``, ...)."""
    with (
        _annotation().open("rb") as fh,
        gzip.open(fh) as text,
    ):
        frame = pd.read_csv(text, sep="\t", comment="#", dtype=str, keep_default_na=False)
    return frame.set_index("symbol")


@functools.cache
def mt_and_y_genes() -> dict[str, str]:
    """``symbol -> chromosome`` of the annotated genes that lie on the mitochondrial genome (``MT``) or on
    chromosome ``Y`` alone: the part of :func:`gene_annotation` that :func:`unreachable` reads, found by
    searching the file's text for those chromosome fields (a few ms, against 60 ms to parse the table)."""
    with _annotation().open("rb") as fh:
        text = gzip.decompress(fh.read()).decode()
    header = next((line for line in text[:4096].splitlines() if not line.startswith("#")), "")
    if header.split("\t")[:2] != ["symbol", "chromosome"]:
        raise ConfigError("the shipped gene annotation has no symbol / chromosome header (damaged install?)")
    out: dict[str, str] = {}
    for chrom in ("MT", "Y"):
        field = f"\t{chrom}\t"
        at = text.find(field)
        while at >= 0:
            symbol = text[text.rfind("\n", 0, at) + 1 : at]
            if "\t" not in symbol and not symbol.startswith("#"):  # the second field: the chromosome
                out[symbol] = chrom
            at = text.find(field, at + 1)
    return out


def unreachable(perturbations: Sequence[str], modality_name: str, sex: str | None) -> dict[str, str]:
    """The perturbations a modality cannot reach in a line, each with why: ``mitochondrial genome`` (CRISPR
    modalities), ``chromosome Y, absent from a female line``. Names the annotation does not know are kept."""
    m = modality(modality_name)
    if not m.genomic:
        return {}
    where = mt_and_y_genes()
    out: dict[str, str] = {}
    for name in perturbations:
        c = where.get(str(name), "")
        if c == "MT":
            out[str(name)] = "mitochondrial genome (out of CRISPR's reach)"
        elif sex == "female" and c == "Y":
            out[str(name)] = "chromosome Y, absent from a female line"
    return out


def on_target_mask(perturbations: np.ndarray, genes: np.ndarray) -> np.ndarray:
    """Rows whose readout gene is the perturbation itself (a gene perturbation's own target)."""
    return np.asarray(perturbations, dtype=object) == np.asarray(genes, dtype=object)


__all__ = [
    "DEFAULT_MODALITY",
    "KNOWN_SEX",
    "MODALITIES",
    "Modality",
    "gene_annotation",
    "line_sex",
    "modality",
    "mt_and_y_genes",
    "on_target_mask",
    "parse_sexes",
    "unreachable",
]
