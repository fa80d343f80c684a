"""The options ``benchmark`` and ``fit`` share (declared once), merged with a config file, and the
configuration tree they build."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from coreperturb import _defaults as d
from coreperturb._defaults import EXECUTOR, RAY_WORKERS
from coreperturb.cli import _options as o
from coreperturb.cli._options import deprecated
from coreperturb.errors import ConfigError

if TYPE_CHECKING:  # the library is imported when a command runs, not to build the help
    from coreperturb._config import BenchmarkConfig


def run_options(ctx: typer.Context, config_file: Path | None, command: str) -> dict[str, Any]:
    """The command's options merged with a config file (flags given on the command line win), old
    spellings renamed (with a warning)."""
    from coreperturb._config import DEPRECATED_KEYS, load_config_file

    params = {k: v for k, v in ctx.params.items() if k not in ("model", "cache", "task")}
    for old, new in DEPRECATED_KEYS.items():
        if ctx.params.get(old) is not None:
            params[new] = deprecated(
                f"--{new.replace('_', '-')}", f"--{old}", params.get(new), ctx.params[old]
            )
    if config_file is None:
        return params
    # compare by name: typer may ship its own copy of click's ParameterSource enum
    given = {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
    for key, value in load_config_file(config_file).items():
        if key not in params:
            raise ConfigError(f"{config_file}: key {key!r} is not an option of `coreperturb {command}`")
        if key not in given:
            params[key] = value
    return params


def benchmark_config(options: dict[str, Any]) -> BenchmarkConfig:
    """The configuration tree of the options named as its leaves (field name = flag name)."""
    from coreperturb._config import LEAVES, BenchmarkConfig

    return BenchmarkConfig.from_options(**{k: v for k, v in options.items() if k in LEAVES})


def _run_template(
    *,
    config_file: o.ConfigOpt = None,
    data_dir: o.DataDirOpt = None,
    queries: o.QueriesOpt = None,
    kg_dir: o.KgDirOpt = None,
    kg_edges: o.KgEdgesOpt = None,
    kg_gmt: o.KgGmtOpt = None,
    kg_structures: o.KgStructuresOpt = None,
    kg_sources: o.KgSourcesOpt = None,
    cell_lines: o.CellLinesOpt = None,
    cell_line: o.CellLineOpt = None,
    task: o.OldTaskOpt = None,
    seed: o.SeedOpt = 0,
    dataset: o.DatasetOpt = "perturbqa",
    negatives_per_perturbation: o.NegOpt = d.NEGATIVES_PER_PERTURBATION,
    test_fraction: o.TestFracOpt = d.SIGNATURE_TEST_FRACTION,
    llm: o.LlmOpt = d.LLM_BACKEND,
    llm_model: o.LlmModelOpt = None,
    model: o.OldLlmModelOpt = None,
    base_url: o.BaseUrlOpt = None,
    concurrency: o.ConcurrencyOpt = d.CONCURRENCY,
    requests_per_second: o.RpsOpt = None,
    timeout: o.TimeoutOpt = d.TIMEOUT,
    max_retries: o.RetriesOpt = d.MAX_RETRIES,
    calibration_queries: o.CalibOpt = d.CALIBRATION_QUERIES,
    response_cache: o.ResponseCacheOpt = None,
    cache: o.OldCacheOpt = None,
    reasoning_tokens: o.ReasoningOpt = 0,
    retry_failed: o.RetryOpt = False,
    executor: o.ExecutorOpt = EXECUTOR,
    ray_address: o.RayAddressOpt = None,
    ray_workers: o.RayWorkersOpt = RAY_WORKERS,
    threads: o.ThreadsOpt = None,
    modality: o.ModalityOpt = None,
    cell_line_sex: o.CellLineSexOpt = None,
    design: o.DesignOpt = "auto",
    lists_cut_from: o.ListsCutOpt = None,
    cross_line: o.CrossLineOpt = True,
    fit_lines: o.FitLinesOpt = None,
    other_lines_weight: o.OtherLinesWeightOpt = d.OTHER_LINES_WEIGHT,
    other_lines_pool: o.OtherLinesPoolOpt = d.OTHER_LINES_POOL,
    other_lines_mean: o.OtherLinesMeanOpt = d.OTHER_LINES_MEAN,
    no_screen_mean: o.NoScreenMeanOpt = d.NO_SCREEN_MEAN,
    measured_pairs: o.MeasuredPairsOpt = d.MEASURED_PAIRS,
) -> None:
    """The data / KG / fit / LLM options that ``benchmark`` and ``fit`` share (declared once)."""


F = TypeVar("F", bound=Callable[..., Any])


def with_run_options(func: F) -> F:
    """Give a command the shared options of :func:`_run_template` after its own parameters (a parameter of its
    own with the same name wins). The command takes them as ``**options``; read them with :func:`run_options`."""
    kw = inspect.Parameter.KEYWORD_ONLY  # typer passes every option by name
    own = [
        p.replace(kind=kw)
        for p in inspect.signature(func, eval_str=True).parameters.values()
        if p.kind != p.VAR_KEYWORD
    ]
    names = {p.name for p in own}
    shared = [
        p.replace(kind=kw)
        for p in inspect.signature(_run_template, eval_str=True).parameters.values()
        if p.name not in names
    ]
    func.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
    return func
