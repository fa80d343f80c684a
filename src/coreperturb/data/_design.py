"""The sampling design of a table: how its DE and not-DE pairs were chosen, per perturbation.

A screen's table rarely asks every perturbation about every gene. Three designs are told apart:

- ``complete``: every perturbation is asked about (nearly) every readout gene; what the table says holds for
  the genome as it stands.
- ``case_control``: each perturbation lists its DE genes and a random sample of its other genes (PerturbQA,
  ``coreperturb prepare``, the LINCS loader). A not-DE pair of perturbation *p* is asked with probability
  ``s_p`` (the share of p's not-DE genes the table asks), a DE pair with probability 1, so the table holds
  ``1 / s_p`` times more DE per not-DE pair than the genome. Where lists were cut (PerturbQA lists about 20 DE
  genes at most), a long list is a sample of p's DE genes as well: how many there are is not known.
- ``uniform``: each perturbation is asked about a random sample of genes whatever their label (the built-in
  synthetic benchmark): the table's DE rate is the genome's.

:func:`perturbation_design` estimates per perturbation what the table's rows allow; the genome-scale
correction (:mod:`coreperturb.stages._scale`) weights each asked not-DE pair by ``1 / s_p``
(inverse-probability weighting), the case-control correction of King & Zeng (2001).

**Not every not-DE gene is asked alike.** PerturbQA asks a gene that responds to many perturbations less
often as a not-DE gene than a rarely responding one, even counting only the perturbations where it is not DE:
in the whole-list training perturbations, the 2% of genes listed DE most often 0.91 times as often as the mean
gene in K562, 0.80 in RPE1 (``python benchmarks/genome_scale.py --asking-rates``). Under
``1 / s_p`` alone, the genome sums that inverse-probability weighting estimates then miss part of the
frequent responders' not-DE pairs, where P(DE) is highest. :func:`asking_factors` measures each gene's
relative asking rate ``r_g`` per bin of its DE rate (:data:`ASKING_BINS`) on the whole-list perturbations,
and a not-DE pair stands for ``1 / (s_p r_g)`` genome pairs (:func:`row_weights`,
:func:`coreperturb.evaluation._genome.genome_weights`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coreperturb.errors import DataValidationError

DESIGNS: tuple[str, ...] = ("auto", "complete", "case_control", "uniform")
"""Names a user may state (``auto``: from the table, see :func:`resolve_design`)."""
COMPLETE_SHARE = 0.95
"""``auto``: a table whose perturbations are asked about at least this share of the readout genes (median)
is ``complete``."""
PERTURBQA_CUT_FROM = 13
"""PerturbQA lists at most about 20 DE genes per perturbation and its list lengths pile up at 13–20 (70%
of perturbations in K562): a list of 13 or more genes may have been cut, a shorter one is the whole list."""
CUT_PILE_SHARE = 0.4
"""``auto``: DE lists look cut where at least this share of the perturbations that list a DE gene list at least
:data:`CUT_FRACTION` of the longest list (PerturbQA 0.55–0.75: its lengths pile up under a cap; LINCS, whose
lists are whole and long-tailed, 0.02)."""
CUT_FRACTION = 0.65
"""The start of the pile-up, as a share of the longest list: ``ceil(0.65 * 20) = 13`` for PerturbQA."""
MIN_CUT_CAP = 10
"""Lists no longer than this are too short to tell a cap from a screen with few DE genes per perturbation."""
ASKING_BINS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)
"""Upper quantiles of the genes' DE rate that bin genes for :func:`asking_factors`: deciles, the top one split
where the frequent responders gather most of Σ P(DE). On the training grids of :data:`ASKING_PRIOR_ASKS`
(k = 10), mean |log ratio| of the P(DE) and prior estimates: these bins 0.118 and 0.037, plain deciles 0.150 and
0.046, quintiles 0.159 and 0.057, 20 bins 0.138 and 0.035."""
ASKING_PRIOR_ASKS = 10.0
"""Each bin's factor is shrunk towards 1 as if this many more asks had come at the mean rate: ``(asks + k) /
(expected + k)``, so a bin of few asks (a small table, or one drawn uniformly) stays near 1. Chosen with the
bins on training perturbations (``python benchmarks/genome_cv.py --run-folds 0,1``: every readout gene of
72–150 held-out whole-list perturbations per line and fold is labelled, so mean P(DE) / DE rate is known
exactly there): the inverse-probability estimate from the asked pairs is off by a mean |log ratio| (P(DE) and
the priors, 4 lines × 2 folds) of 0.142 with ``1 / s_p`` alone, 0.075 with the factors unshrunk, 0.078 with
k = 10, 0.082 with 30, 0.094 with 100: the largest k within 0.005 of the best."""
DESIGN_FILE = "design.json"
"""A data directory may state its design in this file (``{"kind": ..., "lists_cut_from": ...}``)."""


@dataclass(frozen=True)
class SamplingDesign:
    """How a table's pairs were chosen (one design for every cell line of a table; a fit of several tables
    keeps each table's: :attr:`coreperturb.stages.FittedModels.line_designs`).

    Attributes:
        kind: ``complete``, ``case_control`` or ``uniform`` (see the module docstring).
        lists_cut_from: ``case_control`` only: lists of at least this many DE genes may have been cut (their
            perturbations' DE counts are unknown); ``None``: every list is whole.
        source: Where the design comes from: ``stated`` (by the user), ``recorded`` (by the loader or the
            data directory's ``design.json``), ``estimated`` (from the table), ``none`` (models of earlier
            releases).
    """

    kind: str = "case_control"
    lists_cut_from: int | None = None
    source: str = "estimated"

    def __post_init__(self) -> None:
        if self.kind not in DESIGNS[1:]:
            raise DataValidationError(
                f"unknown sampling design {self.kind!r}; choose from {', '.join(DESIGNS[1:])}"
            )
        if self.lists_cut_from is not None and self.lists_cut_from < 1:
            raise DataValidationError(f"lists_cut_from must be >= 1, got {self.lists_cut_from}")

    @property
    def corrects(self) -> bool:
        """Whether the table's rates differ from the genome's (only ``case_control``)."""
        return self.kind == "case_control"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (``model.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SamplingDesign:
        """From :meth:`to_dict` (unknown keys ignored)."""
        cut = raw.get("lists_cut_from")
        return cls(
            str(raw.get("kind", "case_control")),
            None if cut is None else int(cut),
            str(raw.get("source", "recorded")),
        )

    def describe(self) -> str:
        """One line for the terminal, explain and the explorer."""
        if self.kind == "complete":
            return "complete: every perturbation was asked about every readout gene"
        if self.kind == "uniform":
            return (
                "uniform: each perturbation was asked about a random sample of genes; rates are the genome's"
            )
        cut = (
            f"; lists of {self.lists_cut_from} or more DE genes may be cut (their DE counts are unknown)"
            if self.lists_cut_from
            else ""
        )
        return f"case-control: every DE gene listed, a sample of the other genes asked{cut}"


def design_file_for(table_path: str | Path) -> Path:
    """The design file written beside one table (``queries.parquet`` → ``queries.design.json``)."""
    return Path(table_path).with_suffix(".design.json")


def read_design_file(data_dir: str | Path, own: Path | None = None) -> SamplingDesign | None:
    """The design a table states: its own file ``own`` (:func:`design_file_for`) where there is one, else
    the data directory's :data:`DESIGN_FILE`, else ``None``.

    Raises:
        DataValidationError: The file is not a JSON object with a known ``kind``.
    """
    path = own if own is not None and own.is_file() else Path(data_dir) / DESIGN_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataValidationError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise DataValidationError(f"{path}: expected a JSON object with 'kind'")
    return SamplingDesign.from_dict({**raw, "source": "recorded"})


def resolve_design(
    stated: str, rows: pd.DataFrame, *, hint: SamplingDesign | None = None, lists_cut_from: int | None = None
) -> SamplingDesign:
    """The design of a fit: what the user stated, else what the loader recorded (``hint``), else estimated
    from the DE rows (``complete`` where the median perturbation is asked about at least
    :data:`COMPLETE_SHARE` of its line's readout genes, else ``case_control``, its lists cut where they pile
    up under a cap: :func:`estimate_cut`)."""
    if stated not in DESIGNS:
        raise DataValidationError(f"unknown sampling design {stated!r}; choose from {', '.join(DESIGNS)}")
    if stated != "auto":
        return SamplingDesign(stated, lists_cut_from if stated == "case_control" else None, "stated")
    if hint is not None:
        cut = lists_cut_from if lists_cut_from is not None else hint.lists_cut_from
        return SamplingDesign(hint.kind, cut if hint.kind == "case_control" else None, hint.source)
    de = _de_rows(rows)
    shares = []
    for _, r in (
        de.groupby("cell_line", sort=True, observed=True) if "cell_line" in de.columns else [("", de)]
    ):
        n_genes = r["gene"].nunique()
        shares.append(r.groupby("perturbation").size().to_numpy() / max(n_genes, 1))
    share = float(np.median(np.concatenate(shares))) if shares else 1.0
    if share >= COMPLETE_SHARE:
        return SamplingDesign("complete", None, "estimated")
    cut = lists_cut_from if lists_cut_from is not None else estimate_cut(de)[0]
    return SamplingDesign("case_control", cut, "estimated")


def _de_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The DE task's rows (every row of a table without a task column)."""
    return rows.loc[rows["task"].astype(str) == "de"] if "task" in rows.columns else rows


def estimate_cut(rows: pd.DataFrame) -> tuple[int | None, float, int]:
    """``(lists_cut_from, share, longest)`` of a case-control table's DE rows: whether its DE lists look cut.

    A screen that lists every DE gene has long-tailed list lengths (most perturbations change few genes, a
    few change hundreds). A table that keeps at most about N DE genes per perturbation piles its lengths up
    just under N. Where at least :data:`CUT_PILE_SHARE` of the perturbations that list a DE gene list
    ``ceil(CUT_FRACTION * longest)`` or more, lists that long may have been cut (``None``: they look whole).
    """
    de = rows.loc[rows["label"].to_numpy() == 1]
    keys = ["cell_line", "perturbation"] if "cell_line" in de.columns else ["perturbation"]
    n = de.groupby(keys, sort=False, observed=True).size().to_numpy()
    longest = int(n.max()) if len(n) else 0
    if longest <= MIN_CUT_CAP:
        return None, 0.0, longest
    start = int(np.ceil(CUT_FRACTION * longest))
    share = float((n >= start).mean())
    return (start if share >= CUT_PILE_SHARE else None), share, longest


def cut_note(rows: pd.DataFrame, design: SamplingDesign) -> str | None:
    """One line on lists that look cut (:func:`estimate_cut`): why an estimated design holds them cut, or that
    a stated ``case_control`` design without a cut takes them as whole; ``None`` otherwise."""
    stated_whole = (
        design.source == "stated" and design.kind == "case_control" and design.lists_cut_from is None
    )
    if not stated_whole and (design.source != "estimated" or design.lists_cut_from is None):
        return None
    de = _de_rows(rows)
    cut, share, longest = estimate_cut(de)
    if cut is None or (not stated_whole and cut != design.lists_cut_from):
        return None
    seen = (
        f"the DE lists look cut: {share:.0%} of the perturbations list {cut}–{longest} DE genes, piled up "
        f"under the longest ({longest}), where whole lists are long-tailed"
    )
    if stated_whole:
        return (
            f"{seen}, but the stated case_control design takes every list as whole, so the genome scale counts "
            f"their DE genes as known; fit --lists-cut-from {cut} (FitConfig(lists_cut_from={cut})) states the cut"
        )
    return (
        f"{seen}; their DE counts are taken as unknown (fit --lists-cut-from N or FitConfig(lists_cut_from=N) "
        "states the cut; --design case_control takes every list as whole)"
    )


def perturbation_design(rows: pd.DataFrame, universe: int, design: SamplingDesign) -> pd.DataFrame:
    """Per perturbation of one line's DE rows (perturbation, gene, label): what the design says of it.

    Returns:
        Indexed by perturbation: ``n_de`` (listed DE genes), ``n_not_de`` (asked not-DE genes), ``whole``
        (the list is the perturbation's whole DE list: its DE count over the genome is known),
        ``not_de_share`` (the share of its not-DE genes asked, ``s_p``) and ``weight_not_de`` (``1 / s_p``:
        how many genome pairs an asked not-DE pair stands for; 1 where the design needs no correction).
    """
    lab = rows["label"].to_numpy(dtype=np.int64)
    per = pd.DataFrame({"perturbation": rows["perturbation"].astype(str).to_numpy(), "de": lab})
    g = per.groupby("perturbation", sort=True)["de"]
    n_de = g.sum().astype(np.int64)
    n_not = (g.size() - n_de).astype(np.int64)
    whole = np.ones(len(n_de), dtype=bool)
    if design.kind == "case_control" and design.lists_cut_from is not None:
        whole = n_de.to_numpy() < design.lists_cut_from
    if design.corrects:
        share = n_not.to_numpy() / np.maximum(universe - n_de.to_numpy(), 1)
        share = np.clip(share, 1e-9, 1.0)
    else:
        share = np.ones(len(n_de))
    return pd.DataFrame(
        {
            "n_de": n_de.to_numpy(),
            "n_not_de": n_not.to_numpy(),
            "whole": whole,
            "not_de_share": share,
            "weight_not_de": np.where(n_not.to_numpy() > 0, 1.0 / share, 0.0),
        },
        index=n_de.index,
    )


def asking_factors(
    rows: pd.DataFrame, rate: pd.Series, whole: pd.Index, *, prior_asks: float = ASKING_PRIOR_ASKS
) -> pd.Series:
    """``r_g`` per gene: how often the table ``rows`` (perturbation, gene, label) ask it as a not-DE gene,
    per chance, relative to the mean gene.

    Counted on the perturbations ``whole`` (their DE lists are whole, so a gene they do not list is not DE:
    each such perturbation is a chance) and pooled per bin of ``rate`` (:data:`ASKING_BINS`, quantiles over
    every gene ``rate`` holds: pass every readout gene's, since a gene the rows never ask has chances too).
    ``rate`` must not depend on these asks (DE listings per perturbation, or priors from other rows): the
    asked rows' own DE share would bin the least-asked genes together. Each bin's factor is shrunk towards 1
    by ``prior_asks`` asks (:data:`ASKING_PRIOR_ASKS`); 1 for a gene without a rate, or where no whole-list
    perturbation asks a not-DE gene."""
    rate = pd.Series(rate, dtype=np.float64)
    genes = rate.index.astype(str).append(pd.Index(pd.unique(rows["gene"].astype(str)))).unique()
    ones = pd.Series(1.0, index=genes)
    held = rows.loc[rows["perturbation"].astype(str).isin(whole)]
    n_whole = held["perturbation"].nunique()
    r = rate.set_axis(rate.index.astype(str)).reindex(genes).to_numpy()
    fin = np.isfinite(r)
    if n_whole == 0 or not fin.any():
        return ones
    lab = held["label"].to_numpy() == 1
    gene = genes.get_indexer(pd.Index(held["gene"].astype(str)))
    asks = np.bincount(gene[~lab], minlength=len(genes)).astype(np.float64)
    chances = n_whole - np.bincount(gene[lab], minlength=len(genes)).astype(np.float64)
    q = pd.Series(r[fin]).rank(pct=True).to_numpy()
    b = np.minimum(np.searchsorted(np.asarray(ASKING_BINS), q, side="left"), len(ASKING_BINS) - 1)
    a_bin = np.bincount(b, weights=asks[fin], minlength=len(ASKING_BINS))
    c_bin = np.bincount(b, weights=np.maximum(chances[fin], 0.0), minlength=len(ASKING_BINS))
    if a_bin.sum() <= 0:
        return ones
    overall = a_bin.sum() / c_bin.sum()
    expected = c_bin * overall
    with np.errstate(invalid="ignore", divide="ignore"):  # an empty bin (0 / 0 unshrunk) keeps 1
        factor = np.where(expected > 0, (a_bin + prior_asks) / (expected + prior_asks), 1.0)
    out = np.ones(len(genes))
    out[fin] = np.where(factor[b] > 0, factor[b], 1.0)
    return pd.Series(out, index=genes)


def listing_rate(rows: pd.DataFrame) -> pd.Series:
    """Per gene of a table's rows (perturbation, gene, label): the share of the table's perturbations that list
    it DE. The rate :func:`asking_factors` bins a training table's genes by: unlike the asked rows' own DE
    share, it does not depend on how often the gene was asked as a not-DE gene."""
    gene = rows["gene"].astype(str)
    return rows["label"].groupby(gene, sort=False).sum() / max(rows["perturbation"].nunique(), 1)


def row_weights(
    perturbations: np.ndarray,
    labels: np.ndarray,
    per_perturbation: pd.DataFrame,
    *,
    gene_factor: np.ndarray | None = None,
) -> np.ndarray:
    """Genome weight of each row: 1 for a DE row, ``1 / (s_p r_g)`` for a not-DE row (``gene_factor``: each
    row's ``r_g`` of :func:`asking_factors`; ``None``: 1), 0 for rows of perturbations whose lists may be cut
    (their DE share over the genome is unknown) or that the table does not hold."""
    pi = per_perturbation.index.get_indexer(pd.Index(np.asarray(perturbations).astype(str)))
    ok = pi >= 0
    w_not = np.where(ok, per_perturbation["weight_not_de"].to_numpy()[np.maximum(pi, 0)], 0.0)
    if gene_factor is not None:
        w_not = w_not / np.asarray(gene_factor, dtype=np.float64)
    whole = ok & per_perturbation["whole"].to_numpy(dtype=bool)[np.maximum(pi, 0)]
    w = np.where(np.asarray(labels) == 1, 1.0, w_not)
    return np.where(whole & ok, w, 0.0)


def summarise(per_perturbation: pd.DataFrame, universe: int) -> dict[str, float]:
    """The design of one line in numbers (``model.json``, explain, the explorer)."""
    p = per_perturbation
    whole = p["whole"].to_numpy()
    return {
        "readout_genes": float(universe),
        "perturbations": float(len(p)),
        "whole_lists": float(whole.sum()),
        "median_listed_de": float(np.median(p["n_de"])) if len(p) else float("nan"),
        "median_listed_de_whole": float(np.median(p.loc[whole, "n_de"])) if whole.any() else float("nan"),
        "median_not_de_share": float(np.median(p["not_de_share"])) if len(p) else float("nan"),
        "sample_de_rate": float(p["n_de"].sum() / max((p["n_de"] + p["n_not_de"]).sum(), 1)),
    }


__all__ = [
    "ASKING_BINS",
    "ASKING_PRIOR_ASKS",
    "COMPLETE_SHARE",
    "CUT_FRACTION",
    "CUT_PILE_SHARE",
    "DESIGNS",
    "DESIGN_FILE",
    "PERTURBQA_CUT_FROM",
    "SamplingDesign",
    "asking_factors",
    "cut_note",
    "design_file_for",
    "estimate_cut",
    "listing_rate",
    "perturbation_design",
    "read_design_file",
    "resolve_design",
    "row_weights",
    "summarise",
]
