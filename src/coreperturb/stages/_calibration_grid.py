"""The genome map's calibration grid: whole-list calibration perturbations asked about every readout gene.

A case-control table asks each perturbation about a sample of its not-DE genes (PerturbQA: one in 50–90), so the
map from the table's scale to the genome's (:mod:`coreperturb.predictors._scale`) fitted on the asked rows, each
not-DE row weighted by the genome pairs it stands for, rests on a handful of not-DE rows where P(DE) is high, and
its slope and intercept move from one calibration slice to the next. A perturbation whose DE list is whole is
known on every readout gene (DE iff listed), so ``fit`` asks up to :data:`GRID_PERTURBATIONS` of the whole-list
calibration perturbations of each line about every readout gene, with the model that scored the calibration rows
(fitted without them), blends those answers as it blends the calibration rows, and fits each map on that grid
with every pair counted once. Chosen on training perturbations (``python benchmarks/genome_cv.py``): on the same
held-out perturbations and scores, maps fitted on the asked rows had slopes 0.82–1.26 and intercepts −0.85 to
+1.57 from fold to fold, those fitted on the grid 0.86–0.99 and −0.76 to −0.10.

Only the fitted maps are kept (``model.json``'s ``sampling_design.genome_maps``); the grid rows are not.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from coreperturb.data._design import SamplingDesign
from coreperturb.predictors._base import Predictor
from coreperturb.predictors._effect import gene_prior
from coreperturb.predictors._scale import MIN_SCALE_PERTURBATIONS, ScaleMap
from coreperturb.stages._fitted import FittedModels

GRID_PERTURBATIONS = 100
"""Whole-list calibration perturbations per line asked about every readout gene (drawn with the fit's seed)."""
GRID_CHUNK = 20
"""Perturbations scored at once (bounds memory: 20 × 7,435 genes of HepG2 = 149k pairs)."""
GRID_COLUMN = "grid"
"""Marks the grid's rows in the calibration frame between scoring and :func:`with_genome_maps`."""


def grid_perturbations(cal: pd.DataFrame, design: SamplingDesign | None, seed: int) -> list[str]:
    """The whole-list perturbations of a DE unit's calibration slice ``cal`` to ask about every readout gene (at
    most :data:`GRID_PERTURBATIONS`); none where the design needs no genome correction."""
    if design is None or not design.corrects or cal.empty:
        return []
    n_de = cal.groupby(cal["perturbation"].astype(str), sort=True)["label"].sum()
    whole = [str(p) for p in n_de.index[n_de.to_numpy() < (design.lists_cut_from or np.inf)]]
    if len(whole) > GRID_PERTURBATIONS:
        rng = np.random.default_rng(seed)
        whole = sorted(rng.choice(whole, size=GRID_PERTURBATIONS, replace=False).tolist())
    return whole


def grid_rows(
    model: Predictor, cal: pd.DataFrame, seen: pd.DataFrame, perturbations: list[str], genes: np.ndarray
) -> pd.DataFrame:
    """Every pair of ``perturbations`` × ``genes`` scored by ``model`` (fitted on ``seen``), DE iff ``cal`` lists
    it, with the gene priors of ``seen``; columns as the calibration rows', plus :data:`GRID_COLUMN`."""
    de = cal.loc[cal["label"].to_numpy() == 1]
    listed = pd.MultiIndex.from_arrays([de["perturbation"].astype(str), de["gene"].astype(str)])
    prior = gene_prior(seen, genes)
    parts = []
    for i in range(0, len(perturbations), GRID_CHUNK):
        chunk = perturbations[i : i + GRID_CHUNK]
        pert = np.repeat(np.asarray(chunk, dtype=object), len(genes))
        gene = np.tile(genes.astype(object), len(chunk))
        parts.append(
            pd.DataFrame(
                {
                    "gene": gene,
                    "label": pd.MultiIndex.from_arrays([pert, gene]).isin(listed).astype(np.int8),
                    "score": model.score_grid(chunk, genes.tolist(), "de")["score"].to_numpy(np.float64),
                    "p_prior": np.tile(prior, len(chunk)),
                    "perturbation": pert,
                    GRID_COLUMN: True,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def with_genome_maps(models: FittedModels) -> FittedModels:
    """``models`` with a genome map per (line, method) and per line's priors fitted on its calibration grid
    (each pair once), and the grid's rows dropped from the calibration rows (the calls keep the asked rows)."""
    cal = models.calibration
    if cal is None or GRID_COLUMN not in cal.columns:
        return models
    on_grid = (cal[GRID_COLUMN] == True).to_numpy()  # noqa: E712  (NaN in units without a grid)
    maps: dict[tuple[str, str], ScaleMap] = {}
    for (line, method), rows in cal.loc[on_grid].groupby(["cell_line", "method"], sort=True):
        if rows["perturbation"].nunique() < MIN_SCALE_PERTURBATIONS:
            continue
        share = models.not_de_share(str(line))
        y, ones = rows["label"].to_numpy(), np.ones(len(rows))
        maps[(str(line), str(method))] = ScaleMap.fit(rows["score"].to_numpy(), y, ones, share=share)
        if (str(line), "p_prior") not in maps:  # the priors are the same under every method's grid
            maps[(str(line), "p_prior")] = ScaleMap.fit(rows["p_prior"].to_numpy(), y, ones, share=share)
    kept = cal.loc[~on_grid].drop(columns=GRID_COLUMN).reset_index(drop=True)
    return replace(models, calibration=kept, genome_maps=maps)


__all__ = ["GRID_PERTURBATIONS", "grid_perturbations", "grid_rows", "with_genome_maps"]
