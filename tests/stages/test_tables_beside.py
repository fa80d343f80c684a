"""A user's screen beside public screens: one fit of both, each table keeping its own sampling design."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from coreperturb import BenchmarkConfig, load_model, save_model
from coreperturb._config import load_config_file
from coreperturb._pipeline import load_inputs
from coreperturb.data._design import SamplingDesign
from coreperturb.data._schema import QueryTable, combine_tables
from coreperturb.data._synthetic import SyntheticPaths
from coreperturb.errors import CorePerturbError, DataValidationError
from coreperturb.stages import FitConfig, fit
from coreperturb.stages._fitting import shared_name_notes


def _own_screen(synth_paths: SyntheticPaths, out: Path) -> Path:
    """A case-control screen of one's own (line ``mine``): every DE pair of the synthetic line, 20 of the
    other asked genes per perturbation."""
    rows = pd.read_csv(synth_paths.data_dir / "synth_a-de.csv")
    asked = rows.loc[rows["label"] == 0].groupby("pert").sample(n=20, random_state=0)
    path = out / "mine.csv"
    pd.concat([rows.loc[rows["label"] == 1], asked]).to_csv(path, index=False)
    return path


def test_combined_tables_keep_each_design_and_refuse_a_line_twice(synth_table: QueryTable) -> None:
    other = synth_table.frame.assign(cell_line="theirs")
    theirs = QueryTable(other, "theirs.csv", design=SamplingDesign("complete", None, "recorded"))
    both = combine_tables([synth_table, theirs])
    assert both.cell_lines == ["synth_a", "theirs"]
    assert [(p.cell_lines, p.design) for p in both.parts] == [
        (("synth_a",), synth_table.design),
        (("theirs",), theirs.design),
    ]
    one = both.keep((both.frame["cell_line"] == "theirs").to_numpy())
    assert [p.cell_lines for p in one.parts] == [("theirs",)]
    with pytest.raises(DataValidationError, match="'synth_a' is in both"):
        combine_tables([synth_table, synth_table])


def test_an_own_screen_beside_a_data_directory_is_fitted_with_its_own_design(
    synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    mine = _own_screen(synth_paths, tmp_path)
    config = BenchmarkConfig.from_options(
        queries=mine,
        data_dir=synth_paths.data_dir,
        kg_dir=synth_paths.kg_dir,
        tasks="de",
        cell_lines="mine,synth_a",
    )
    inputs = load_inputs(config, tmp_path, for_fit=True)
    assert inputs.table.cell_lines == ["mine", "synth_a"]
    models = fit(inputs.table, inputs.kg, FitConfig(methods=("core_voting",)))
    # the synthetic directory records a uniform design; the own table is estimated case-control
    assert models.design_of("synth_a") == SamplingDesign("uniform", None, "recorded")
    assert models.design_of("mine") is not None and models.design_of("mine").kind == "case_control"
    assert models.scale("synth_a", "core_voting") is None  # its rates are the genome's already
    assert models.scale("mine", "core_voting") is not None  # its odds are corrected
    assert "mine: case-control" in models.describe_design() and "synth_a: uniform" in models.describe_design()
    save_model(models, tmp_path / "model")
    assert load_model(tmp_path / "model").line_designs == models.line_designs
    # a stated design holds for every table: one design, none per line
    stated = fit(inputs.table, inputs.kg, FitConfig(methods=("core_voting",), design="complete"))
    assert stated.line_designs == {} and stated.design_of("mine") == stated.design_of("synth_a")


def test_lines_asked_for_come_from_either_source_and_a_missing_one_stops(
    synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    mine = _own_screen(synth_paths, tmp_path)
    opts = {"queries": mine, "data_dir": synth_paths.data_dir, "kg_dir": synth_paths.kg_dir}
    only_mine = BenchmarkConfig.from_options(**opts, cell_lines="mine")
    with pytest.raises(CorePerturbError, match="names no line of"):
        load_inputs(only_mine, tmp_path, for_fit=True)
    with pytest.raises(CorePerturbError, match=r"\['nope'\] neither in"):
        load_inputs(BenchmarkConfig.from_options(**opts, cell_lines="mine,nope"), tmp_path, for_fit=True)
    with pytest.raises(CorePerturbError, match="none of its cell line"):
        load_inputs(BenchmarkConfig.from_options(**opts, cell_lines="synth_a"), tmp_path, for_fit=True)


def test_several_own_tables_fit_together_each_with_its_design(
    synth_paths: SyntheticPaths, tmp_path: Path
) -> None:
    mine = _own_screen(synth_paths, tmp_path)
    theirs = tmp_path / "lab_b.csv"
    pd.read_csv(synth_paths.data_dir / "synth_a-de.csv").to_csv(theirs, index=False)
    (tmp_path / "lab_b.design.json").write_text('{"kind": "uniform"}')
    config = BenchmarkConfig.from_options(queries=[mine, theirs], kg_dir=synth_paths.kg_dir)
    assert config.data.queries == (mine, theirs)
    table = load_inputs(config, tmp_path, for_fit=True).table
    assert table.cell_lines == ["lab_b", "mine"]
    assert [(p.cell_lines, p.design) for p in table.parts] == [
        (("mine",), None),
        (("lab_b",), SamplingDesign("uniform", None, "recorded")),
    ]
    with pytest.raises(CorePerturbError, match="one query table"):
        BenchmarkConfig.from_options(queries=[mine, theirs], cell_line="x")
    # a configuration file lists them, relative to itself
    run = tmp_path / "run.toml"
    run.write_text('queries = ["mine.csv", "lab_b.csv"]\n')
    assert load_config_file(run)["queries"] == [str(mine.resolve()), str(theirs.resolve())]


def test_a_line_that_names_its_genes_otherwise_is_told(synth_table: QueryTable) -> None:
    train = synth_table.frame.loc[synth_table.frame["split"] == "train"]
    ours = train.assign(cell_line="ours")
    theirs = train.assign(cell_line="theirs", gene="ENSG_" + train["gene"].astype(str))
    notes = shared_name_notes(pd.concat([ours, theirs]), FitConfig())
    assert len(notes) == 2 and notes[0].startswith("ours: 0 of its") and "HGNC symbols" in notes[0]
    # the same names: nothing to say, nor beside a small panel of them; one line, or the lines kept apart:
    # nothing either
    assert shared_name_notes(pd.concat([ours, train.assign(cell_line="theirs")]), FitConfig()) == []
    panel = train.loc[train["gene"].isin(sorted(set(train["gene"]))[:20])].assign(cell_line="panel")
    assert shared_name_notes(pd.concat([ours, panel]), FitConfig()) == []
    assert shared_name_notes(pd.concat([ours, theirs]), FitConfig(cross_line=False)) == []
