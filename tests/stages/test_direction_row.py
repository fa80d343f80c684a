"""The explorer's direction row: a pair's direction without scoring its DE, equal to the grid's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coreperturb import fit
from coreperturb.data import load_perturbqa, write_synthetic
from coreperturb.graph import build_kg
from coreperturb.stages import FitConfig
from coreperturb.stages._grids import score_direction, score_pairs


def test_the_direction_row_is_the_grids_direction(tmp_path: object) -> None:
    paths = write_synthetic(str(tmp_path), seed=1, n_genes=150)
    table = load_perturbqa(paths.data_dir, paths.cell_lines, ("de", "dir"))
    models = fit(table, build_kg(paths.kg_dir), FitConfig(seed=0))  # two lines: blended
    test = table.split("test")
    probe = pd.concat(
        [
            test.loc[test["cell_line"] == "synth_a", ["perturbation", "gene"]].drop_duplicates().head(300),
            # a perturbation's own target (the rule), a misspelt gene, an unknown perturbation
            pd.DataFrame({"perturbation": ["G0001", "G0001", "NOPEX"], "gene": ["G0001", "NOPE", "G0002"]}),
        ],
        ignore_index=True,
    )
    for line in ("synth_a", "NEWLINE"):  # a screened line, and a line with no screen
        full = next(iter(score_pairs(models, line, probe, ["core_voting"])))
        only = score_direction(models, line, probe, "core_voting")
        assert np.array_equal(only["p_up"], full["p_up"], equal_nan=True), line
        assert list(only["call_dir"]) == list(full["call_dir"]), line
        assert full["on_target"].any() and np.isfinite(full["p_up"]).sum() > 250, line
        assert np.isnan(full["p_up"].iloc[-2:]).all() and set(full["call_dir"].iloc[-2:]) == {""}, line
