"""Calls with a guarantee: Mondrian (category-conditional) split-conformal prediction sets for a binary score.

Every (perturbation, gene) gets a set of labels that holds the true label with probability at least the
chosen confidence (``1 - alpha``), **within each category** of genes: the genes' prior bins (deciles of the
gene-frequency score over the calibration rows), and a gene of its own where it has at least
``min_gene_rows`` calibration rows (none in PerturbQA, which has 3–7 held-out rows per gene). The guarantee
holds for exchangeable rows: calibration and new perturbations drawn alike.

The nonconformity of label ``y`` is ``1 - P(y)`` (the "LAC" score of Sadinle et al. 2019, MAPIE's ``lac``,
crepes' ``hinge``); ``q`` is the ``ceil((n + 1)(1 - alpha))``-th smallest calibration score of the category
(``q = 1``, every label, when the category has too few rows for that rank). A label is in the set when its
nonconformity is at most ``q``.

**Held by the calibration drawn, not only on average (direction calls).** That rank gives coverage of at
least ``1 - alpha`` on average over the draws of calibration rows; the coverage of one fitted model's category
is a random variable around it (Beta-distributed: Vovk 2012, "Conditional validity of inductive conformal
predictors"), so with 10 prior bins of a few hundred rows some bin of a model falls short by chance. The
direction calls therefore take the training-conditional ("PAC") rank: ``q`` is the ``k``-th smallest score with
``k`` the smallest rank at which ``P(Binomial(n, 1 - alpha) <= k - 1) >= 1 - delta`` (:func:`pac_rank`;
``delta`` from :data:`CALL_DELTA`, 0.1), so each category's coverage is at least the confidence with
probability 0.9 over the calibration perturbations drawn. With weights, ``n`` is the rows' effective number
``(sum w)^2 / sum w^2`` and the level ``k / (n + 1)`` replaces the confidence in the weighted quantile (equal
weights give the unweighted rank). The DE calls keep the plain rank: over the genome their coverage is 0.98 or
more in every prior decile either way, and the larger ``q`` turns empty sets (read as ``uncertain``) into ``not
DE`` calls, covering fewer DE pairs. Both chosen on training perturbations (``python benchmarks/call_guarantee.py``, held-out halves of the four-line
model's calibration rows: the direction calls' worst prior decile 0.867 → 0.896, short of 0.87 in 16% of the
halvings instead of 48%, at 2 points more uncertain calls; the DE calls would cover DE pairs 0.43 instead of
0.52). The calls:

- ``{positive}`` → the positive call (``DE``, ``up``); ``{negative}`` → the negative one (``not DE``,
  ``down``);
- both labels → ``uncertain``: the model cannot tell at this confidence;
- **no label** (neither conforms: a score between the category's usual positives and negatives) →
  ``uncertain`` as well, except for the DE task where ``P(DE)`` is at least the confidence (below). An empty
  set is a sign of an unusual row; counting it as both labels can only raise coverage.

**A DE call at the confidence.** Where DE pairs are rare (over the genome about 1 in 600), the set of every
row's 90% answer is ``not DE`` or nothing: a coverage guarantee is met by almost never naming the rare label.
So a DE-task row whose set is empty is also called ``DE`` where its probability is at least the confidence:
if the probabilities are calibrated (the genome map fits them on held-out perturbations), at least that share
of such calls are right (the Bayes rule; the expected precision of the calls, Müller et al. 2004). This is a
model-based promise, not a distribution-free one: over the genome a table that asks one not-DE pair in 50–90
cannot certify 90% precision from its calibration rows (each asked not-DE row stands for 50–90 genome pairs;
to bound 90% at 90% confidence takes over 1,000 DE calibration rows above the threshold and no asked not-DE
row), so ``benchmark`` reports the calls' precision over the genome (``genome_de_call_precision``).

Calibration rows are training perturbations that the scoring model never saw (:func:`calibration_split`):
``fit`` fits a copy of each method on the other training perturbations and scores these.

**Over the genome.** Where the table asks each perturbation about a sample of its not-DE genes, its
calibration rows are not the pairs a user asks about. Each row then carries a weight (1 for a DE row, ``1 /
s_p`` for an asked not-DE row: the genome pairs it stands for), and ``q`` is the weighted quantile with the new
row's mass (the largest weight of the category) at infinity: weighted split conformal (Tibshirani et al. 2019)
under the known sampling of the rows, so that the guarantee holds over the readout genes, not the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from coreperturb._defaults import CALL_DELTA, DEFAULT_CONFIDENCE

N_PRIOR_BINS = 10
MIN_GENE_ROWS = 100
"""A gene needs this many calibration rows to be a category of its own."""
CALIBRATION_FOLDS = 5
"""One in this many training perturbations calibrates the calls (the same slice CORE-Voting holds out)."""
CALL_LABELS: dict[str, tuple[str, str]] = {"de": ("DE", "not DE"), "dir": ("up", "down")}
"""Per task: the names of the positive and the negative call."""
UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class MondrianConformal:
    """Calibration nonconformity scores per category of one fitted (cell line, task, method).

    Attributes:
        edges: Inner edges of the prior bins (a gene's bin: ``searchsorted(edges, prior, "right")``).
        bin_scores: Sorted calibration nonconformity scores of each prior bin.
        genes: Genes with a category of their own.
        gene_scores: Their sorted calibration nonconformity scores.
    """

    edges: np.ndarray
    bin_scores: tuple[np.ndarray, ...]
    genes: tuple[str, ...] = ()
    gene_scores: tuple[np.ndarray, ...] = ()
    bin_weights: tuple[np.ndarray, ...] = ()
    gene_weights: tuple[np.ndarray, ...] = ()

    @classmethod
    def fit(
        cls,
        scores: np.ndarray,
        labels: np.ndarray,
        prior: np.ndarray,
        genes: np.ndarray,
        *,
        n_bins: int = N_PRIOR_BINS,
        min_gene_rows: int = MIN_GENE_ROWS,
        weights: np.ndarray | None = None,
    ) -> MondrianConformal:
        """From calibration rows: each row's P(positive), true label, gene prior and gene; ``weights``: each
        row's sampling weight (rows of weight 0 are left out; ``None``: every row counts once)."""
        p = np.asarray(scores, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        pr = np.asarray(prior, dtype=np.float64)
        g = np.asarray(genes).astype(str)
        ok = np.isfinite(p) & np.isfinite(pr)
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        if w is not None:
            ok &= np.isfinite(w) & (w > 0)
            w = w[ok]
        p, y, pr, g = p[ok], y[ok], pr[ok], g[ok]
        nonconf = np.where(y == 1, 1.0 - p, p)
        edges = np.unique(np.quantile(pr, np.linspace(0, 1, n_bins + 1)[1:-1])) if len(pr) else np.zeros(0)
        b = np.searchsorted(edges, pr, side="right")
        counts = pd.Series(g).value_counts()
        own = sorted(str(x) for x in counts.index[counts.to_numpy() >= min_gene_rows])
        # each category's scores sorted once; with weights, the weights in the same order
        cats = [b == i for i in range(len(edges) + 1)] + [g == x for x in own]
        orders = [np.argsort(nonconf[m], kind="stable") for m in cats]
        ranked = tuple(nonconf[m][o] for m, o in zip(cats, orders, strict=True))
        wts = () if w is None else tuple(w[m][o] for m, o in zip(cats, orders, strict=True))
        n = len(edges) + 1
        return cls(edges, ranked[:n], tuple(own), ranked[n:], wts[:n], wts[n:])

    @staticmethod
    def quantile(
        sorted_scores: np.ndarray,
        confidence: float,
        weights: np.ndarray | None = None,
        *,
        delta: float | None = None,
    ) -> float:
        """The conformal threshold of one category: the :func:`pac_rank`-th smallest score (``delta=None``:
        the ``ceil((n + 1) * confidence)``-th, coverage on average); with ``weights`` (aligned with the
        sorted scores), the smallest score whose cumulative weight reaches that level of the total plus the
        new row's (the category's largest weight). 1.0 (every label) where the category is too small."""
        n = len(sorted_scores)
        if weights is not None and n:
            level = confidence
            if delta is not None:
                # the rank of that many unweighted rows, as a share of them plus the new one
                m = int(float(weights.sum()) ** 2 / float(np.square(weights).sum()))
                rank = pac_rank(m, confidence, delta)
                if rank > m:
                    return 1.0
                level = rank / (m + 1)
            cum = np.cumsum(weights)
            need = level * (cum[-1] + float(weights.max()))
            at = int(np.searchsorted(cum, need, side="left"))
            return 1.0 if at >= n else float(sorted_scores[at])
        rank = int(np.ceil((n + 1) * confidence)) if delta is None else pac_rank(n, confidence, delta)
        return 1.0 if rank > n or n == 0 else float(sorted_scores[rank - 1])

    def thresholds(
        self,
        prior: np.ndarray,
        genes: np.ndarray,
        confidence: float = DEFAULT_CONFIDENCE,
        *,
        delta: float | None = None,
    ) -> np.ndarray:
        """Each row's threshold ``q`` (NaN where the prior is unknown); ``delta``: :meth:`quantile`'s."""
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
        pr = np.asarray(prior, dtype=np.float64)
        bw = self.bin_weights or (None,) * len(self.bin_scores)
        q_bin = np.array(
            [self.quantile(s, confidence, w, delta=delta) for s, w in zip(self.bin_scores, bw, strict=True)]
        )
        q = q_bin[np.searchsorted(self.edges, np.nan_to_num(pr, nan=0.0), side="right")]
        if self.genes:
            gw = self.gene_weights or (None,) * len(self.gene_scores)
            q_gene = pd.Series(
                [
                    self.quantile(s, confidence, w, delta=delta)
                    for s, w in zip(self.gene_scores, gw, strict=True)
                ],
                index=self.genes,
            )
            own = pd.Index(np.asarray(genes).astype(str)).map(q_gene).to_numpy(dtype=np.float64)
            q = np.where(np.isfinite(own), own, q)
        return np.where(np.isfinite(pr), q, np.nan)

    def sets(
        self,
        scores: np.ndarray,
        prior: np.ndarray,
        genes: np.ndarray,
        confidence: float = DEFAULT_CONFIDENCE,
        *,
        delta: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(has_positive, has_negative)``: whether each label is in each row's prediction set (both False
        where the score or the prior is unknown); ``delta``: :meth:`quantile`'s."""
        p = np.asarray(scores, dtype=np.float64)
        q = self.thresholds(prior, genes, confidence, delta=delta)
        known = np.isfinite(p) & np.isfinite(q)
        return known & (1.0 - p <= q), known & (p <= q)

    def calls(
        self,
        scores: np.ndarray,
        prior: np.ndarray,
        genes: np.ndarray,
        task: str = "de",
        confidence: float = DEFAULT_CONFIDENCE,
        *,
        delta: float | Literal["task"] | None = "task",
    ) -> np.ndarray:
        """The call of every row: the positive / negative label of :data:`CALL_LABELS`, ``uncertain`` (both
        labels or none; for the DE task an empty set with ``P(DE) >= confidence`` is ``DE``), or ``""``
        where the score or the prior is unknown. ``delta``: :meth:`quantile`'s (``"task"``: the task's
        :data:`CALL_DELTA`, the plain rank for a task it does not name)."""
        pos_name, neg_name = CALL_LABELS[task]
        d = CALL_DELTA.get(task) if delta == "task" else delta
        pos, neg = self.sets(scores, prior, genes, confidence, delta=d)
        known = np.isfinite(np.asarray(scores, dtype=np.float64)) & np.isfinite(
            np.asarray(prior, dtype=np.float64)
        )
        out = np.full(len(pos), UNCERTAIN, dtype=object)
        out[pos & ~neg] = pos_name
        if task == "de":  # an empty set with P(DE) at least the confidence: the Bayes rule's DE call
            with np.errstate(invalid="ignore"):
                likely = np.asarray(scores, dtype=np.float64) >= confidence
            out[~pos & ~neg & likely] = pos_name
        out[neg & ~pos] = neg_name
        out[~known] = ""
        return out


def pac_rank(n: int, confidence: float, delta: float) -> int:
    """The smallest rank ``k`` whose ``k``-th smallest of ``n`` calibration scores covers a new row with
    probability at least ``confidence``, with probability at least ``1 - delta`` over the calibration rows:
    ``P(Binomial(n, confidence) <= k - 1) >= 1 - delta`` (``n + 1`` where no rank of ``n`` rows does)."""
    from scipy.stats import binom

    if n < 1:
        return 1
    return int(binom.ppf(1.0 - delta, n, confidence)) + 1


def calibration_split(perturbations: pd.Series, seed: int) -> np.ndarray:
    """Rows of the calibration slice: one in :data:`CALIBRATION_FOLDS` training perturbations (whole
    perturbations, chosen with ``seed``)."""
    from coreperturb.predictors._base import perturbation_folds

    return np.asarray(perturbation_folds(perturbations, CALIBRATION_FOLDS, seed + 1) == 0)


def coverage(
    labels: np.ndarray, has_positive: np.ndarray, has_negative: np.ndarray, *, empty_is_uncertain: bool = True
) -> np.ndarray:
    """Whether each row's set holds its true label (an empty set counts as both labels when
    ``empty_is_uncertain``, as the calls read it)."""
    y = np.asarray(labels, dtype=np.int64)
    pos, neg = np.asarray(has_positive), np.asarray(has_negative)
    if empty_is_uncertain:
        empty = ~pos & ~neg
        pos, neg = pos | empty, neg | empty
    return np.where(y == 1, pos, neg)


__all__ = [
    "CALL_DELTA",
    "CALL_LABELS",
    "DEFAULT_CONFIDENCE",
    "UNCERTAIN",
    "MondrianConformal",
    "calibration_split",
    "coverage",
    "pac_rank",
]
