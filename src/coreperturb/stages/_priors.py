"""The gene priors of a fitted model: what gene frequency alone predicts for each readout gene."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coreperturb.predictors._effect import gene_prior
from coreperturb.stages._fitted import FittedModels


def gene_priors(models: FittedModels, cell_line: str, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the gene's DE prior and its up-rate among DE observations, both from the line's training
    rows (NaN for genes never observed, and up-rates NaN without a direction task). The DE prior is on the
    genome scale where the line's design asks for it (:meth:`FittedModels.prior_scale`)."""
    de = models.cached(
        f"prior/{cell_line}/de",
        lambda: pd.Series(
            gene_prior(models.training_rows(cell_line, "de"), models.readout_genes(cell_line, "de")),
            index=models.readout_genes(cell_line, "de"),
        ),
    )

    def up_rates() -> tuple[pd.Series, float]:
        """Each direction readout's up-rate, and the line's overall one (computed once, not per chunk)."""
        rows = models.training_rows(cell_line, "dir")
        if rows.empty:
            return pd.Series(dtype=np.float64), float("nan")
        g = models.readout_genes(cell_line, "dir")
        return pd.Series(gene_prior(rows, g), index=g), float(rows["label"].mean())

    up, overall_up = models.cached(f"prior/{cell_line}/dir", up_rates)
    gi = pd.Index(genes)
    prior = de.reindex(gi).to_numpy(dtype=np.float64)
    to_genome = models.prior_scale(cell_line)
    if to_genome is not None:  # the chance over the readout genes, not over the table's asked pairs
        prior = to_genome(prior)
    if up.empty:
        return prior, np.full(len(gi), np.nan)
    # a readout gene never DE in training has no direction of its own: the line's overall up-rate
    up_rate = up.reindex(gi).fillna(overall_up).to_numpy(dtype=np.float64)
    return prior, np.where(np.isfinite(prior), up_rate, np.nan)


def line_priors(models: FittedModels, cell_line: str) -> pd.Series:
    """Every readout gene's DE prior of one line (:func:`gene_priors`), indexed by gene."""
    genes = np.asarray(models.readout_genes(cell_line, "de"), dtype=object)
    return pd.Series(gene_priors(models, cell_line, genes)[0], index=genes)


def readout_priors(models: FittedModels) -> pd.DataFrame:
    """Every readout gene's prior (the gene-frequency score) per cell line: ``cell_line``, ``gene``,
    ``p_prior``; what gene frequency alone would list, highest first within a line."""
    parts = []
    for line in models.cell_lines:
        prior = line_priors(models, line)
        parts.append(pd.DataFrame({"cell_line": line, "gene": prior.index, "p_prior": prior.to_numpy()}))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["cell_line", "p_prior"], ascending=[True, False], kind="stable").reset_index(
        drop=True
    )


__all__ = ["gene_priors", "line_priors", "readout_priors"]
