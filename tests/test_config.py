"""The configuration tree: one home for names, defaults and checks; flags, fields and file keys agree."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest

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
        ({"data_dir": "x"}, "need a KG"),
        ({"no_such_setting": 1}, "unknown setting"),
    ],
)
def test_checks_live_in_the_config(options: dict[str, object], message: str) -> None:
    with pytest.raises(CorePerturbError, match=message):
        BenchmarkConfig.from_options(**options)


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

    sig = inspect.signature(CoreVoting.__init__).parameters
    assert {k: sig[k].default for k in init if k in sig} == {k: v for k, v in init.items() if k in sig}
    assert FitConfig().llm_config == LLMConfig() and DataConfig().tasks == ("de",)


def test_the_command_line_reads_the_library_defaults() -> None:
    """A default the CLI shares with the library is the same value (both read ``coreperturb._defaults``): a
    change there reaches both."""
    from coreperturb import _api, report
    from coreperturb.cli import explain as explain_cmd
    from coreperturb.cli import llm_server, predict, serve
    from coreperturb.cli import report as report_cmd
    from coreperturb.llm._server import serve_until_signal
    from coreperturb.serve import open_service
    from coreperturb.serve._app import serve as serve_app
    from coreperturb.serve._service import PredictionService

    def defaults(func: object) -> dict[str, object]:
        return {k: p.default for k, p in inspect.signature(func).parameters.items()}  # type: ignore[arg-type]

    pairs = [
        (predict.predict, _api.predict_to_file, {"executor", "ray_workers", "min_excess"}),
        (serve.serve, serve_app, {"port"}),
        (serve.serve, open_service, {"max_gene_jobs"}),
        (llm_server.llm_server, serve_until_signal, {"port"}),
        (report_cmd.report, report.write_report, {"top"}),
    ]
    for cli, lib, names in pairs:
        got, want = defaults(cli), defaults(lib)
        for name in names & set(want):
            assert got[name] == want[name], (cli, name)
    assert defaults(predict.predict)["chunk_pairs"] == defaults(_api.predict_to_file)["pairs_per_chunk"]
    assert defaults(explain_cmd.explain)["evidence_rows"] == defaults(PredictionService.explain)["top"]
