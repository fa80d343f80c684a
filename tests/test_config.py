"""The configuration tree: one home for names, defaults and checks; flags, fields and file keys agree."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coreperturb._config import (
    COMMAND_KEYS,
    LEAVES,
    BenchmarkConfig,
    ConfigFile,
    DataConfig,
    FitConfig,
    LLMConfig,
    load_config_file,
)
from coreperturb.cli import app
from coreperturb.errors import ConfigError, CorePerturbError


def test_leaves_are_unique_and_the_file_schema_is_derived() -> None:
    assert len(LEAVES) == len(set(LEAVES))
    assert set(ConfigFile.model_fields) == set(LEAVES) | set(COMMAND_KEYS)


def test_from_options_builds_the_tree_and_round_trips() -> None:
    cfg = BenchmarkConfig.from_options(
        cell_lines="k562,rpe1", tasks="de,dir", methods="core_voting", llm_model="m", bootstrap=5, seed=3
    )
    assert cfg.data.cell_lines == ("k562", "rpe1") and cfg.data.tasks == ("de", "dir")
    assert cfg.fit.methods == ("core_voting",) and cfg.fit.seed == 3
    assert cfg.fit.llm_config.llm_model == "m" and cfg.evaluate.bootstrap == 5
    assert BenchmarkConfig.from_options(**cfg.options()) == cfg
    assert cfg.replace(seed=4).fit.seed == 4 and cfg.replace(seed=4).data == cfg.data


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"methods": "nope"}, "unknown predictor 'nope'"),
        ({"tasks": "de,up"}, "unknown task"),
        ({"executor": "spark"}, "unknown executor"),
        ({"dataset": "geo"}, "unknown dataset"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"bootstrap": -1}, "bootstrap"),
        ({"concurrency": 0}, "concurrency"),
        ({"data_dir": "x", "queries": "y"}, "not both"),
        ({"data_dir": "x"}, "need a KG"),
        ({"no_such_setting": 1}, "unknown setting"),
    ],
)
def test_checks_live_in_the_config(options: dict[str, object], message: str) -> None:
    with pytest.raises(CorePerturbError, match=message):
        BenchmarkConfig.from_options(**options)


def test_every_leaf_is_a_flag_of_benchmark_or_fit() -> None:
    runner = CliRunner()
    flags: set[str] = set()
    for command in ("benchmark", "fit"):
        out = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"}).output
        flags |= set(re.findall(r"--([a-z][a-z-]+)", out))
    missing = {leaf for leaf in LEAVES if leaf.replace("_", "-") not in flags} - {"llm_extra", "all_rows"} | (
        {"all_rows"} - {f.replace("-", "_") for f in flags}
    )
    assert not missing, missing


def test_config_file_keys_old_spellings_and_paths(tmp_path: Path) -> None:
    (tmp_path / "e.tsv").write_text("A\tB\n")
    f = tmp_path / "run.toml"
    f.write_text('model = "old"\ncache = "c.sqlite"\ntasks = ["de", "dir"]\nkg_edges = ["mine=e.tsv"]\n')
    with pytest.warns(DeprecationWarning):
        got = load_config_file(f)
    assert got["llm_model"] == "old" and got["response_cache"] == (tmp_path / "c.sqlite").resolve()
    assert got["tasks"] == "de,dir" and got["kg_edges"] == [f"mine={(tmp_path / 'e.tsv').resolve()}"]
    bad = tmp_path / "bad.toml"
    bad.write_text("nope = 1\n")
    with pytest.raises(ConfigError, match="nope"):
        load_config_file(bad)


def test_defaults_have_one_home() -> None:
    from coreperturb.evidence._features import FeatureParams
    from coreperturb.predictors._core_voting import CoreVoting

    fp = FeatureParams()
    init = {p.name: p.default for p in dataclasses.fields(fp)}
    import inspect

    sig = inspect.signature(CoreVoting.__init__).parameters
    assert {k: sig[k].default for k in init if k in sig} == {k: v for k, v in init.items() if k in sig}
    assert FitConfig().llm_config == LLMConfig() and DataConfig().tasks == ("de",)
