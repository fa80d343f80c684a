"""Name resolution: user-given perturbation and gene names → the names a model and its KG know."""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coreperturb.data._genes import line_sex, unreachable
from coreperturb.data._io import COLUMN_ALIASES, read_any
from coreperturb.errors import CorePerturbError
from coreperturb.stages._fitted import FittedModels


class UnknownNameWarning(UserWarning):
    """A perturbation or gene that neither the model nor the KG knows (its rows are flagged)."""


@dataclass(frozen=True)
class NameResolution:
    """How user-given names map to the names a model / KG knows.

    Attributes:
        names: Canonical name of each input (unknown names are kept as given).
        renamed: Input → canonical name, where only the case differed or a drug name was given.
        unknown: Inputs known neither to the model nor to the KG.
        suggestions: Unknown input → close known names.
    """

    names: list[str]
    renamed: dict[str, str]
    unknown: list[str]
    suggestions: dict[str, list[str]]

    def unknown_message(self, name: str, what: str, *, suggest: bool = True) -> str:
        """Why ``name`` (a ``perturbation`` or ``gene``) cannot be answered, with close known names (unless
        ``suggest`` is false: the explorer shows them as links). The one wording of the CLI, the library and
        the explorer."""
        hint = self.suggestions.get(name) if suggest else None
        more = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
        if what == "gene":
            return f"gene {name!r} was never a readout in the model's training rows{more}"
        return f"{what} {name!r} is unknown to the model and the KG{more}"

    def messages(self, what: str) -> list[str]:
        """One warning line per renamed or unknown name."""
        out = [f"{what} {a!r} read as {b!r}" for a, b in self.renamed.items()]
        out += [
            f"{self.unknown_message(u, what)}; its rows are flagged and get no score" for u in self.unknown
        ]
        return out

    def require_some(self, what: str) -> NameResolution:
        """Warn about renamed / unknown names (:class:`UnknownNameWarning`) and stop when none is known.

        Raises:
            CorePerturbError: Every name is unknown.
        """
        if self.names and len(self.unknown) == len(self.names):
            first = self.unknown[0]
            hint = self.suggestions.get(first)
            more = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
            where = "a readout gene of the model" if what == "gene" else "known to the model or its KG"
            raise CorePerturbError(
                f"none of the {len(self.names)} {what}s is {where} (e.g. {first!r}{more}); check the "
                "spelling (HGNC symbols" + (", DrugBank ids or drug names)" if what != "gene" else ")")
            )
        warn_names(self, what)
        return self


def resolve_names(
    names: Sequence[str], known: Collection[str], aliases: dict[str, str] | None = None, suggest: int = 5
) -> NameResolution:
    """Map names to known ones: exact match, then a drug name / alias, then a case-insensitive unique match.

    HGNC symbols are case-sensitive identifiers in upper case, so ``fth1`` is read as ``FTH1`` (with a
    warning) when exactly one known name matches it ignoring case; otherwise it stays unknown. Unknown
    names get close matches (difflib) as suggestions for the first ``suggest`` of them.
    """
    import difflib

    aliases = aliases or {}
    known_set = known if isinstance(known, (set, frozenset)) else set(map(str, known))
    upper: dict[str, list[str]] = {}
    alias_upper: dict[str, list[str]] = {}
    out: list[str] = []
    renamed: dict[str, str] = {}
    unknown: list[str] = []
    for raw in names:
        n = str(raw).strip()
        if n in known_set:
            out.append(n)
            continue
        if not upper:  # built on the first name that is no exact match (most queries have none)
            for k in known_set:
                upper.setdefault(k.upper(), []).append(k)
            for a, target in aliases.items():
                alias_upper.setdefault(str(a).upper(), []).append(str(target))
        cands = sorted(set(upper.get(n.upper(), []) + alias_upper.get(n.upper(), [])))
        if len(cands) == 1:
            renamed[n] = cands[0]
            out.append(cands[0])
        else:
            unknown.append(n)
            out.append(n)
    suggestions: dict[str, list[str]] = {}
    if unknown:
        pool = sorted(known_set)
        for u in unknown[:suggest]:
            suggestions[u] = difflib.get_close_matches(u.upper(), pool, n=3, cutoff=0.75)
    return NameResolution(out, renamed, unknown, suggestions)


def known_perturbations(models: FittedModels) -> list[str]:
    """Every perturbation name the model can place: training perturbations, KG genes, KG drugs and
    compounds with a chemical structure."""
    return sorted(known_perturbation_set(models))


def known_perturbation_set(models: FittedModels) -> frozenset[str]:
    """:func:`known_perturbations` as a set, computed once per model."""

    def make() -> frozenset[str]:
        names = set(map(str, pd.unique(models.train["perturbation"])))
        names.update(map(str, models.kg.genes))
        names.update(models.kg.compounds)
        return frozenset(names)

    return models.cached("names/perturbations", make)


def resolve_perturbations(models: FittedModels, names: Sequence[str]) -> NameResolution:
    """:func:`resolve_names` against the model's perturbations and KG (drug names map to their ids)."""
    aliases = {str(v): str(k) for k, v in models.kg.names.items()}
    return resolve_names(names, known_perturbation_set(models), aliases)


def resolve_genes(models: FittedModels, names: Sequence[str]) -> NameResolution:
    """:func:`resolve_names` against the readout genes of the model's training rows."""
    known = models.cached(
        "names/genes", lambda: frozenset(map(str, pd.unique(models.train["gene"].astype(str))))
    )
    return resolve_names(names, known)


_ORF = r"C[0-9XY]+orf[0-9]+[A-Z]?"
GENE_SYMBOL = re.compile(
    rf"^(?:[A-Z][A-Z0-9]*|{_ORF})(?:-(?:[A-Z0-9]+|{_ORF}))*(?:_[0-9A-Z]+)?(?:\.[0-9]+)?$"
)
"""What a human gene symbol looks like (HGNC: upper-case letters and digits, ``-``-joined parts, ``C1orf50``
style open reading frames, ``_2`` suffixes, clone names such as ``AC118549.1``). KG files also name
pathogen genes (``Rv1280c``, ``SARS-coronavirus``), RNAs (``18S-rRNA``) and placeholders (``N/A``): those are
no candidates for a human knockdown."""


def candidate_pool(models: FittedModels, cell_line: str) -> tuple[list[str], list[str], dict[str, str]]:
    """``(candidates, dropped, unreachable)``: :func:`candidate_perturbations`, the KG names it leaves out as
    no human gene symbol, and the genes it leaves out because the modality cannot reach them
    (:func:`unreachable_perturbations`, each with why)."""
    kg = models.kg
    trained = set(models.training_perturbations(cell_line, models.tasks[0]).astype(str))
    drugs = set(kg.compounds)  # drugs with targets and compounds with a chemical structure
    drug_model = sum(p in drugs for p in trained) > len(trained) / 2
    pool = sorted(drugs) if drug_model else [str(g) for g in kg.genes if str(g) not in drugs]
    cand = [p for p in pool if p not in trained]
    if not cand:
        return [], [], {}
    info = kg.has_info(cand)
    cand = [p for p, ok in zip(cand, info, strict=True) if ok]
    if drug_model:
        return cand, [], {}
    out = unreachable_perturbations(models, cell_line, cand)
    cand = [p for p in cand if p not in out]
    return [p for p in cand if GENE_SYMBOL.match(p)], [p for p in cand if not GENE_SYMBOL.match(p)], out


def unreachable_perturbations(
    models: FittedModels, cell_line: str, perturbations: Sequence[str] | None = None
) -> dict[str, str]:
    """Gene perturbations the model's modality cannot reach in ``cell_line``, each with why (mitochondrially
    encoded genes for CRISPR; chromosome-Y genes in a female line): :func:`coreperturb.data._genes.unreachable`.
    ``None``: the KG's gene candidates that are no training perturbation."""
    if perturbations is None:
        trained = set(models.training_perturbations(cell_line, models.tasks[0]).astype(str))
        drugs = set(models.kg.compounds)
        perturbations = [str(g) for g in models.kg.genes if str(g) not in drugs and str(g) not in trained]
    cfg = models.config
    return unreachable(list(perturbations), str(cfg.modality), line_sex(cell_line, cfg.cell_line_sex))


def candidate_perturbations(models: FittedModels, cell_line: str) -> list[str]:
    """``--perturbations all``: every KG entity of the model's kind with KG information that is not a
    training perturbation of ``cell_line``: human gene symbols (:data:`GENE_SYMBOL`) of the KG's gene-level
    sources for genetic screens (less those the modality cannot reach: :func:`unreachable_perturbations`),
    drugs when most training perturbations are drugs."""
    return candidate_pool(models, cell_line)[0]


def dropped_candidates(models: FittedModels, cell_line: str) -> list[str]:
    """KG names that :func:`candidate_perturbations` leaves out because they are no human gene symbol."""
    return candidate_pool(models, cell_line)[1]


def warn_names(resolution: NameResolution, what: str, limit: int = 20) -> None:
    """Emit :class:`UnknownNameWarning` for every renamed or unknown name (the first ``limit``, then a count)."""
    msgs = resolution.messages(what)
    for msg in msgs[:limit]:
        warnings.warn(msg, UnknownNameWarning, stacklevel=2)
    if len(msgs) > limit:
        warnings.warn(
            f"... and {len(msgs) - limit} more {what} names renamed or unknown",
            UnknownNameWarning,
            stacklevel=2,
        )


def read_pairs(models: FittedModels, path: Path) -> pd.DataFrame:
    """A table of (perturbation, gene[, cell_line]) pairs with the names resolved (unknown names warned
    about and kept, so that their rows are flagged).

    Raises:
        CorePerturbError: A missing column or an empty value (naming the row).
    """
    raw = read_any(path).rename(columns=COLUMN_ALIASES)
    for col in ("perturbation", "gene"):
        if col not in raw.columns:
            raise CorePerturbError(f"{path}: missing column {col!r}; found {list(map(str, raw.columns))}")
        bad = raw[col].isna() | (raw[col].astype(str).str.strip() == "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CorePerturbError(f"{path}, row {i + 2}, column {col!r}: empty value")
    pairs = pd.DataFrame()
    for col, resolve in (("perturbation", resolve_perturbations), ("gene", resolve_genes)):
        given = raw[col].astype(str).str.strip()
        uniq = list(pd.unique(given))
        res = resolve(models, uniq)
        warn_names(res, col)
        pairs[col] = given.map(dict(zip(uniq, res.names, strict=True)))
    if "cell_line" in raw.columns:
        pairs["cell_line"] = raw["cell_line"].astype(str)  # which lines are answered: query_lines
    return pairs


def query_lines(
    models: FittedModels, pairs: pd.DataFrame, lines: list[str], *, chosen: bool, path: Path
) -> list[str]:
    """The lines a query table is answered for: ``lines``, plus the lines the table names that the model holds
    no screen of (answered from the screened lines) unless the lines were ``chosen``; rows of the other lines
    are left out with one warning.

    Raises:
        CorePerturbError: Every row names a line outside those asked for.
    """
    if "cell_line" not in pairs.columns:
        return lines
    named = [str(x) for x in pd.unique(pairs["cell_line"])]
    if not chosen:  # a line with no screen in the model is answered from the lines it holds, with a warning
        new = [x for x in named if not models.screened(x) and x not in lines]
        lines = lines + models.require_cell_lines(new, unscreened=True) if new else lines
    left = [x for x in named if x not in lines]
    n = int(pairs["cell_line"].isin(left).sum())
    asked = ", ".join(lines)
    if n and n == len(pairs):
        raise CorePerturbError(f"{path}: every row names a cell line outside those asked for ({asked})")
    if n:
        warnings.warn(
            f"{path}: {n} row(s) of cell line(s) {', '.join(left)} left out: not among those asked for ({asked})",
            stacklevel=3,
        )
    return lines
