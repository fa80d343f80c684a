"""Per-perturbation signature tables (e.g. LINCS L1000 consensus signatures) → the tidy query table.

A signature table lists, for each perturbation, the genes it significantly changed (with a direction and a
score). Everything else in the measured gene universe counts as "not changed". The loader turns that into
DE questions (positives = significant genes, negatives = a seeded sample of the non-significant genes of the
universe) and direction questions (on the positives: up = 1, down = 0), with an unseen-perturbation split.

Bad rows are never dropped silently: unknown gene ids and duplicate pairs are counted in
:class:`SignatureReport` (or raise, with ``strict=True``); unknown directions always raise, naming the file,
row and column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from coreperturb import _defaults as d
from coreperturb.data._design import SamplingDesign
from coreperturb.data._schema import QueryTable
from coreperturb.errors import DataValidationError

UP_WORDS = frozenset({"up", "+", "1", "increase", "increased", "upregulated", "pos", "positive"})
DOWN_WORDS = frozenset({"down", "-", "-1", "0", "decrease", "decreased", "downregulated", "neg", "negative"})
LINCS_FILES = {"signatures": "consensi-drugbank-binary.tsv", "universe": "genes.tsv"}


@dataclass(frozen=True)
class SignatureReport:
    """What the signature loader kept and dropped (nothing is dropped without being counted here).

    Attributes:
        n_rows: Signature rows read.
        dropped_unknown_gene: Rows whose gene id is not in the universe.
        dropped_duplicate: Rows repeating an already seen (perturbation, gene) pair.
        n_perturbations: Perturbations in the output.
        n_train_perturbations: Of which in the train split.
        n_test_perturbations: Of which in the test split.
        n_positive: DE pairs (significant genes).
        n_negative: Sampled non-significant pairs.
        unknown_gene_examples: A few of the unknown gene ids, for the message.
    """

    n_rows: int
    dropped_unknown_gene: int
    dropped_duplicate: int
    n_perturbations: int
    n_train_perturbations: int
    n_test_perturbations: int
    n_positive: int
    n_negative: int
    unknown_gene_examples: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [
            f"{self.n_rows} signature rows → {self.n_perturbations} perturbations "
            f"({self.n_train_perturbations} train / {self.n_test_perturbations} test), "
            f"{self.n_positive} positive and {self.n_negative} sampled negative pairs",
        ]
        if self.dropped_unknown_gene:
            out.append(
                f"dropped {self.dropped_unknown_gene} rows with gene ids outside the universe "
                f"(e.g. {', '.join(self.unknown_gene_examples)})"
            )
        if self.dropped_duplicate:
            out.append(
                f"dropped {self.dropped_duplicate} duplicate (perturbation, gene) rows (kept the first)"
            )
        return out


def _direction(values: pd.Series, source: str, column: str, row_offset: int) -> np.ndarray:
    """1 for up, 0 for down; raises naming the first unrecognised value."""
    s = values.astype(str).str.strip().str.lower()
    up = s.isin(UP_WORDS)
    down = s.isin(DOWN_WORDS)
    bad = ~(up | down)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(
            f"{source}, row {i + row_offset}, column {column!r}: direction {values.iat[i]!r} is not "
            f"up/down (accepted: {sorted(UP_WORDS)} or {sorted(DOWN_WORDS)})"
        )
    return up.to_numpy().astype(np.int8)


def signatures_to_queries(
    signatures: pd.DataFrame,
    universe: pd.DataFrame,
    *,
    cell_line: str = "lincs",
    negatives_per_perturbation: int = d.NEGATIVES_PER_PERTURBATION,
    test_fraction: float = d.SIGNATURE_TEST_FRACTION,
    seed: int = 0,
    tasks: tuple[str, ...] = ("de", "dir"),
    strict: bool = False,
    source: str = "<signatures>",
    perturbation_col: str = "perturbagen",
    gene_col: str = "entrez_gene_id",
    direction_col: str = "direction",
    universe_gene_col: str = "entrez_gene_id",
    universe_symbol_col: str | None = "symbol",
    row_offset: int = 2,
    perturbations: Sequence[str] | None = None,
) -> tuple[QueryTable, SignatureReport]:
    """Build the tidy query table from a signature table and its gene universe.

    Args:
        signatures: One row per (perturbation, significant gene) with a direction.
        universe: The measured gene universe (gene ids and, optionally, symbols).
        cell_line: Value of the ``cell_line`` column.
        negatives_per_perturbation: Non-significant genes sampled per perturbation as negatives
            (fewer if the universe is smaller; at least the universe's size: every gene, and the table's
            design is ``complete``, else ``case_control``).
        test_fraction: Share of perturbations held out as unseen test perturbations.
        seed: Seed of the negative sampling and the split.
        tasks: ``de`` and/or ``dir``.
        strict: Raise on the first unknown gene id or duplicate pair instead of counting drops.
        source: File name used in messages.
        perturbation_col: Signature column holding the perturbation id.
        gene_col: Signature column holding the gene id.
        direction_col: Signature column holding the direction.
        universe_gene_col: Universe column of gene ids.
        universe_symbol_col: Universe column of gene symbols used as ``gene`` in the output (``None`` keeps ids).
        row_offset: Added to 0-based positions for reported row numbers (2 = CSV/TSV with a header).
        perturbations: All perturbations measured (default: those with a signature row); ones without any
            significant gene contribute negatives only.

    Returns:
        The query table and a report of what was kept and dropped.

    Raises:
        DataValidationError: Missing columns, unknown directions, bad ``test_fraction``, or (``strict``) bad rows.
    """
    for frame, cols, what in (
        (signatures, [perturbation_col, gene_col, direction_col], source),
        (universe, [universe_gene_col] + ([universe_symbol_col] if universe_symbol_col else []), "universe"),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"{what}: missing column(s) {', '.join(map(repr, missing))}; found {list(map(str, frame.columns))}"
            )
    if not 0 < test_fraction < 1:
        raise DataValidationError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if negatives_per_perturbation < 0:
        raise DataValidationError(
            f"negatives_per_perturbation must be >= 0, got {negatives_per_perturbation}"
        )
    uni_ids = universe[universe_gene_col].astype(str).str.strip()
    symbols = universe[universe_symbol_col].astype(str).str.strip() if universe_symbol_col else uni_ids
    id_to_symbol = dict(zip(uni_ids, symbols, strict=True))
    if len(id_to_symbol) != len(uni_ids):
        raise DataValidationError("universe: duplicate gene ids")
    sig = signatures.reset_index(drop=True)
    pert = sig[perturbation_col].astype(str).str.strip()
    gid = sig[gene_col].astype(str).str.strip()
    direction = _direction(sig[direction_col], source, direction_col, row_offset)
    known = gid.isin(id_to_symbol).to_numpy()
    if strict and not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise DataValidationError(
            f"{source}, row {i + row_offset}, column {gene_col!r}: gene id {gid.iat[i]!r} is not in the universe"
        )
    unknown_examples = tuple(pd.unique(gid[~known])[:5])
    dup = pd.DataFrame({"p": pert, "g": gid}).duplicated().to_numpy() & known
    if strict and dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataValidationError(
            f"{source}, row {i + row_offset}: duplicate pair perturbation={pert.iat[i]!r} gene={gid.iat[i]!r}"
        )
    keep = known & ~dup
    pos = pd.DataFrame(
        {"perturbation": pert[keep].to_numpy(), "gene_id": gid[keep].to_numpy(), "direction": direction[keep]}
    )
    rng = np.random.default_rng(seed)
    perts = np.asarray(sorted(set(pd.unique(pert)) | set(perturbations or ())))
    all_ids = np.asarray(list(id_to_symbol))
    # negatives: a seeded sample of the universe minus each perturbation's significant genes
    neg_p: list[np.ndarray] = []
    neg_g: list[np.ndarray] = []
    sig_by_p = pos.groupby("perturbation")["gene_id"].agg(set).to_dict()
    for p in perts:
        cand = all_ids[~np.isin(all_ids, list(sig_by_p.get(p, ())))]
        k = min(negatives_per_perturbation, len(cand))
        neg_g.append(rng.choice(cand, size=k, replace=False))
        neg_p.append(np.full(k, p, dtype=object))
    neg = pd.DataFrame({"perturbation": np.concatenate(neg_p), "gene_id": np.concatenate(neg_g)})
    test_perts = set(rng.permutation(perts)[: max(1, round(test_fraction * len(perts)))])
    if len(test_perts) >= len(perts):
        raise DataValidationError(f"{source}: too few perturbations ({len(perts)}) for a train/test split")
    frames = []
    if "de" in tasks:
        frames.append(
            pd.concat(
                [
                    pos.assign(label=1, task="de")[["perturbation", "gene_id", "label", "task"]],
                    neg.assign(label=0, task="de"),
                ]
            )
        )
    if "dir" in tasks:
        frames.append(pos.rename(columns={"direction": "label"}).assign(task="dir"))
    out = pd.concat(frames, ignore_index=True)
    out["gene"] = out["gene_id"].map(id_to_symbol)
    out["cell_line"] = cell_line
    out["split"] = np.where(out["perturbation"].isin(test_perts), "test", "train")
    # two ids with one symbol would make duplicate pairs: keep the first, count the rest
    sym_dup = out.duplicated(["task", "perturbation", "gene"]).to_numpy()
    out = out.loc[~sym_dup].sort_values(["task", "perturbation", "gene"], kind="stable")
    # every significant gene listed, a seeded sample of the others, or all of them: recorded, not guessed
    whole = negatives_per_perturbation >= len(all_ids)
    design = SamplingDesign("complete" if whole else "case_control", None, "recorded")
    table = QueryTable(out.drop(columns=["gene_id"]), source, design=design)
    de = table.frame[table.frame["task"] == "de"] if "de" in tasks else table.frame
    report = SignatureReport(
        n_rows=len(sig),
        dropped_unknown_gene=int((~known).sum()),
        dropped_duplicate=int(dup.sum()) + int(sym_dup.sum()),
        n_perturbations=len(perts),
        n_train_perturbations=len(perts) - len(test_perts),
        n_test_perturbations=len(test_perts),
        n_positive=int(de["label"].sum()) if "de" in tasks else len(pos),
        n_negative=int((de["label"] == 0).sum()) if "de" in tasks else 0,
        unknown_gene_examples=unknown_examples,
    )
    return table, report


def load_lincs(
    lincs_dir: str | Path,
    *,
    negatives_per_perturbation: int = d.NEGATIVES_PER_PERTURBATION,
    test_fraction: float = d.SIGNATURE_TEST_FRACTION,
    seed: int = 0,
    tasks: tuple[str, ...] = ("de", "dir"),
    strict: bool = False,
) -> tuple[QueryTable, SignatureReport]:
    """Load LINCS L1000 consensus signatures (``consensi-drugbank-binary.tsv`` + ``genes.tsv``).

    Args:
        lincs_dir: Directory holding the two files.
        negatives_per_perturbation: Non-significant genes sampled per compound.
        test_fraction: Share of compounds held out (unseen-drug split).
        seed: Seed for sampling and split.
        tasks: ``de`` and/or ``dir``.
        strict: Raise instead of counting dropped rows.
    """
    lincs_dir = Path(lincs_dir)
    paths = {k: lincs_dir / v for k, v in LINCS_FILES.items()}
    for p in paths.values():
        if not p.exists():
            raise DataValidationError(
                f"{p}: file not found (a LINCS directory holds {sorted(LINCS_FILES.values())})"
            )
    try:
        sig = pd.read_csv(paths["signatures"], sep="\t", dtype=str, keep_default_na=False)
        uni = pd.read_csv(paths["universe"], sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataValidationError(f"{lincs_dir}: cannot read LINCS tables: {exc}") from None
    return signatures_to_queries(
        sig,
        uni,
        cell_line="lincs",
        negatives_per_perturbation=negatives_per_perturbation,
        test_fraction=test_fraction,
        seed=seed,
        tasks=tasks,
        strict=strict,
        source=str(paths["signatures"]),
    )


__all__ = ["LINCS_FILES", "SignatureReport", "load_lincs", "signatures_to_queries"]
