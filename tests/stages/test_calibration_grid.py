"""The genome map fitted on a calibration grid: whole-list calibration perturbations asked about every gene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from coreperturb import load_model, save_model
from coreperturb.data._design import SamplingDesign
from coreperturb.data._schema import QueryTable
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.predictors._conformal import calibration_split
from coreperturb.stages import FitConfig, fit
from coreperturb.stages._calibration_grid import GRID_PERTURBATIONS, grid_perturbations, grid_rows
from coreperturb.stages._fitting import make_model


def _case_control(synth_paths: SyntheticPaths) -> QueryTable:
    """The synthetic line as a case-control screen: every DE pair, 20 other asked genes per perturbation."""
    rows = pd.read_csv(synth_paths.data_dir / "synth_a-de.csv")
    asked = rows.loc[rows["label"] == 0].groupby("pert").sample(n=20, random_state=0)
    frame = pd.concat([rows.loc[rows["label"] == 1], asked]).rename(columns={"pert": "perturbation"})
    frame = frame.assign(cell_line="mine", task="de").reset_index(drop=True)
    return QueryTable(frame, "mine.csv", design=SamplingDesign("case_control", 12, "stated"))


def test_fit_maps_each_line_on_every_gene_of_its_whole_list_calibration_perturbations(
    synth_paths: SyntheticPaths, synth_kg: KnowledgeGraph, tmp_path: Path
) -> None:
    table = _case_control(synth_paths)
    models = fit(table, synth_kg, FitConfig(methods=("gene_frequency", "core_voting")))
    assert models.design_of("mine") == table.design  # lists of 12 or more DE genes may be cut
    train = models.training_rows("mine", "de")
    cal = train.loc[calibration_split(train["perturbation"], models.config.seed)]
    whole = cal.groupby("perturbation")["label"].sum()
    gridded = min(int((whole < 12).sum()), GRID_PERTURBATIONS)
    assert gridded >= 10
    genes = len(models.readout_genes("mine"))
    for key in [("mine", "core_voting"), ("mine", "gene_frequency"), ("mine", "p_prior")]:
        assert models.genome_maps[key].rows == gridded * genes  # every pair of the grid, once
    assert models.scale("mine", "core_voting") is models.genome_maps[("mine", "core_voting")]
    assert models.prior_scale("mine") is models.genome_maps[("mine", "p_prior")]
    # the calls keep the asked calibration rows only
    assert models.calibration is not None and "grid" not in models.calibration.columns
    assert len(models.calibration) == 2 * len(cal)
    # kept in model.json, read back as fitted
    save_model(models, tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert set(meta["sampling_design"]["genome_maps"]["mine"]) == {"core_voting", "gene_frequency", "p_prior"}
    back = load_model(tmp_path / "model")
    assert back.genome_maps == models.genome_maps
    p = np.linspace(0.01, 0.99, 7)
    scale = back.scale("mine", "core_voting")
    assert scale is not None and np.array_equal(scale(p), models.genome_maps[("mine", "core_voting")](p))


def test_the_grid_holds_whole_lists_only_and_labels_what_they_list(
    synth_paths: SyntheticPaths, synth_kg: KnowledgeGraph
) -> None:
    frame = _case_control(synth_paths).frame
    listed = frame.loc[frame["label"] == 1].groupby("perturbation").size()
    cut = int(listed.median())
    perts = grid_perturbations(frame, SamplingDesign("case_control", cut), seed=0)
    assert perts and all(listed.get(p, 0) < cut for p in perts)
    assert grid_perturbations(frame, SamplingDesign("uniform", None), seed=0) == []  # nothing to correct
    model = make_model("gene_frequency", synth_kg, FitConfig(methods=("gene_frequency",)))
    model.fit(frame)
    genes = np.asarray(sorted(frame["gene"].unique()), dtype=object)
    grid = grid_rows(model, frame, frame, perts[:3], genes)
    assert len(grid) == 3 * len(genes) and grid["grid"].all()
    de = set(map(tuple, frame.loc[frame["label"] == 1, ["perturbation", "gene"]].to_numpy()))
    assert grid["label"].to_numpy().tolist() == [
        int((p, g) in de) for p, g in zip(grid["perturbation"], grid["gene"], strict=True)
    ]
    assert grid["score"].notna().all() and grid["p_prior"].notna().all()


def test_a_design_without_a_correction_fits_no_grid(
    synth_table: QueryTable, synth_kg: KnowledgeGraph
) -> None:
    models = fit(synth_table, synth_kg, FitConfig(methods=("core_voting",)))
    assert models.genome_maps == {}
