"""The one configuration tree: every setting's name, default and check, in one place.

``BenchmarkConfig(data, kg, fit, evaluate)`` holds a :class:`DataConfig`, a :class:`KGConfig`, a
:class:`FitConfig` (with its :class:`LLMConfig`) and an :class:`EvaluateConfig`. Every leaf field has a name
that is unique in the tree and equals its command-line flag (``data_dir`` is ``--data-dir``) and its
configuration-file key, so :meth:`BenchmarkConfig.from_options` builds the tree from flat options with no mapping
table, and :class:`ConfigFile` (the file schema) is derived from the same fields; checks run in ``__post_init__``.

A configuration file (TOML or YAML) holds any of those keys, plus the command's own options (``out``, ...),
paths relative to the file, never an API key (docs: config files)::

    data_dir = "../shared/data/perturbqa"
    cell_lines = "k562,rpe1"
    methods = "gene_frequency,core_voting"

It runs over 500 lines because the tree is one place: every section, its checks and the file schema together.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from coreperturb import _defaults as d
from coreperturb._defaults import (
    DEFAULT_METHODS,
    EXECUTOR,
    MEASURED_PAIRS,
    NO_SCREEN_MEAN,
    OTHER_LINES_MEAN,
    OTHER_LINES_POOL,
    OTHER_LINES_WEIGHT,
    RAY_WORKERS,
    TASKS,
)
from coreperturb._util import split_names
from coreperturb.data._design import DESIGNS
from coreperturb.data._genes import DEFAULT_MODALITY, modality, parse_sexes
from coreperturb.errors import ConfigError, CorePerturbError
from coreperturb.predictors._base import PREDICTORS

if TYPE_CHECKING:
    from coreperturb.llm._backends import LLMSettings

DATASETS: tuple[str, ...] = ("perturbqa", "lincs")
EXECUTORS: tuple[str, ...] = ("local", "ray")
POOLS: tuple[str, ...] = ("probabilities", "log_odds")
"""How a line's own answer and the other lines' are pooled (:attr:`FitConfig.other_lines_pool`); also how several
lines' answers are averaged into one (:attr:`FitConfig.other_lines_mean`, :attr:`FitConfig.no_screen_mean`)."""
MEASURED_READINGS: tuple[str, ...] = ("labels", "rates", "gene_rates")
"""How another line's measurement of a pair is read (:attr:`FitConfig.measured_pairs`)."""

DEPRECATED_KEYS: dict[str, str] = {"task": "tasks", "model": "llm_model", "cache": "response_cache"}
"""Old option / file-key spellings, read for one release with a warning."""


def named_paths(values: Any, key: str) -> tuple[tuple[str, Path], ...]:
    """Parse ``NAME=PATH`` items (NAME defaults to the file's stem); a missing file stops here.

    Raises:
        ConfigError: An item without a name or whose file does not exist.
    """
    if not values:
        return ()
    items = [values] if isinstance(values, (str, Path)) else list(values)
    out = []
    for item in items:
        if isinstance(item, tuple):
            name, p = str(item[0]), Path(item[1])
        else:
            name, sep, path = str(item).rpartition("=")
            p = Path(path)
            name = name.strip() if sep else p.stem
        if not name:
            raise ConfigError(f"{key} {item!r}: expected NAME=PATH")
        if not p.is_file():
            raise ConfigError(f"{key} {item!r}: {p}: file not found")
        out.append((name, p))
    return tuple(out)


def _path(value: Any) -> Path | None:
    return None if value is None or value == "" else Path(value)


def _paths(value: Any) -> tuple[Path, ...] | None:
    """One path or several (``None``: none)."""
    if value is None or isinstance(value, (str, Path)):
        one = _path(value)
        return None if one is None else (one,)
    out = tuple(Path(v) for v in value if v not in (None, ""))
    return out or None


@dataclass(frozen=True)
class DataConfig:
    """Which query rows to load.

    Attributes:
        data_dir: Directory of ``{cell_line}-{task}.csv`` files (or the LINCS directory); ``None`` and no
            ``queries`` = generate the synthetic benchmark.
        queries: Tidy query tables (CSV / TSV / Parquet, as ``coreperturb prepare`` writes; one path or
            several) instead, or beside ``data_dir``: your screens next to public ones, each line reading the
            others' (each table keeps its own sampling design).
        cell_lines: Cell lines to load (default: every line present in the data; beside ``data_dir``, lines of
            either source).
        cell_line: The cell line of a ``queries`` file without a ``cell_line`` column (default: its name).
        tasks: ``de`` and/or ``dir``.
        negatives_per_perturbation: ``lincs`` only: non-significant genes sampled per perturbation.
        test_fraction: ``lincs`` only: share of perturbations held out as unseen test perturbations.
    """

    data_dir: Path | None = None
    queries: tuple[Path, ...] | None = None
    cell_lines: tuple[str, ...] | None = None
    cell_line: str | None = None
    tasks: tuple[str, ...] = ("de",)
    negatives_per_perturbation: int = d.NEGATIVES_PER_PERTURBATION
    test_fraction: float = d.SIGNATURE_TEST_FRACTION

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", _path(self.data_dir))
        object.__setattr__(self, "queries", _paths(self.queries))
        if self.queries is not None and len(self.queries) > 1 and self.cell_line is not None:
            raise ConfigError(
                "cell_line names the line of one query table; with several, give each a cell_line column "
                "(or name each file after its line)"
            )
        object.__setattr__(self, "cell_lines", split_names(self.cell_lines))
        object.__setattr__(self, "tasks", split_names(self.tasks) or ("de",))
        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise ConfigError(f"unknown task(s) {bad}; use de and/or dir")
        if self.negatives_per_perturbation < 0:
            raise ConfigError("negatives_per_perturbation must be >= 0")
        if not 0 < self.test_fraction < 1:
            raise ConfigError("test_fraction must lie between 0 and 1")

    @property
    def user_data(self) -> bool:
        """The user named data (otherwise the synthetic benchmark is generated)."""
        return self.data_dir is not None or self.queries is not None


@dataclass(frozen=True)
class KGConfig:
    """Which knowledge graph to build.

    Attributes:
        kg_dir: Directory of KG source files (``go_annotations.tsv``, ...).
        kg_sources: Built-in sources (default: every one whose file exists in ``kg_dir``).
        kg_edges: ``(name, path)`` of gene—gene edge lists, each added as a network relation.
        kg_gmt: ``(name, path)`` of GMT gene-set files, each added as a gene-set relation.
        kg_structures: Compound structure tables (CSV / TSV: id, SMILES) joining the ``structure`` relation.
    """

    kg_dir: Path | None = None
    kg_sources: tuple[str, ...] | None = None
    kg_edges: tuple[tuple[str, Path], ...] = ()
    kg_gmt: tuple[tuple[str, Path], ...] = ()
    kg_structures: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kg_dir", _path(self.kg_dir))
        object.__setattr__(self, "kg_sources", split_names(self.kg_sources))
        object.__setattr__(self, "kg_edges", named_paths(self.kg_edges, "kg_edges"))
        object.__setattr__(self, "kg_gmt", named_paths(self.kg_gmt, "kg_gmt"))
        structures = named_paths(self.kg_structures, "kg_structures")
        object.__setattr__(self, "kg_structures", tuple(p for _, p in structures))

    @property
    def user_files(self) -> bool:
        """Any KG file was named (a directory, edge lists, gene sets or structures)."""
        return self.kg_dir is not None or bool(self.kg_edges or self.kg_gmt or self.kg_structures)


@dataclass(frozen=True)
class LLMConfig:
    """How the LLM methods (``llm_isolated``, ``core_reasoning``) reach their model and keep answers.

    Attributes:
        llm: Backend: ``embedded`` (a bundled GGUF on CPU), ``openai`` (any OpenAI-compatible server) or
            ``vllm``.
        llm_model: Model name (openai / vllm), or a GGUF path or bundled name (embedded).
        base_url: OpenAI-compatible server URL, e.g. ``http://127.0.0.1:8000/v1``.
        concurrency: Requests in flight.
        requests_per_second: Cap on request starts per second.
        timeout: Per-request timeout (s); retried with backoff.
        max_retries: Retries per request (timeouts, 429, 5xx).
        calibration_queries: Held-out TRAIN queries scored to fit the calibration.
        response_cache: Shared SQLite cache of LLM answers (default: ``$COREPERTURB_CACHE_DIR`` or the user
            cache directory); each run's result store is separate.
        reasoning_tokens: Rationale length before the forced Yes/No answer (0 = answer at once).
        retry_failed: Re-run rows stored with an error.
        executor: ``local`` (async calls in-process) or ``ray`` (calls over a Ray Data dataset).
        ray_address: Ray cluster address (default: a local Ray).
        ray_workers: Concurrent Ray workers.
        llm_extra: Backend-specific keyword arguments (Python API only), e.g. ``{"n_threads": 2}``.
    """

    llm: str = d.LLM_BACKEND
    llm_model: str | None = None
    base_url: str | None = None
    concurrency: int = d.CONCURRENCY
    requests_per_second: float | None = None
    timeout: float = d.TIMEOUT
    max_retries: int = d.MAX_RETRIES
    calibration_queries: int = d.CALIBRATION_QUERIES
    response_cache: Path | None = None
    reasoning_tokens: int = 0
    retry_failed: bool = False
    executor: str = EXECUTOR
    ray_address: str | None = None
    ray_workers: int = RAY_WORKERS
    llm_extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "response_cache", _path(self.response_cache))
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r}; use local or ray")
        for key in ("concurrency", "ray_workers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1")
        for key in ("calibration_queries", "reasoning_tokens", "max_retries"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0")
        if self.timeout <= 0 or (self.requests_per_second is not None and self.requests_per_second <= 0):
            raise ConfigError("timeout and requests_per_second must be > 0")

    def settings(self) -> LLMSettings:
        """The LLM layer's :class:`~coreperturb.llm.LLMSettings` (checks the backend's needs)."""
        from coreperturb.llm._backends import LLMSettings  # the LLM layer loads only for LLM methods

        return LLMSettings(
            backend=self.llm,
            model=self.llm_model,
            base_url=self.base_url,
            concurrency=self.concurrency,
            requests_per_second=self.requests_per_second,
            timeout=self.timeout,
            max_retries=self.max_retries,
            extra=dict(self.llm_extra),
        )


@dataclass(frozen=True)
class FitConfig:
    """How :func:`coreperturb.stages.fit` trains.

    Attributes:
        methods: Registered predictor names.
        seed: Seed of synthetic data, folds, combiners, LLM calibration samples, the LINCS split, bootstrap.
        dataset: ``perturbqa`` (``{cell_line}-{task}.csv`` files) or ``lincs`` (signature tables; CORE-Voting
            then chooses its neighbourhood size, 50 or 100, on training data: drug neighbourhoods are sparser).
        all_rows: Fit on every row, the test split too (a model for prediction; never for a benchmark).
        llm_config: The LLM methods' settings.
        modality: One of :data:`coreperturb.data._genes.MODALITIES` (``crispri``, ``crispra``, ``knockout``,
            ``drug``; ``None``: ``drug`` for LINCS, else ``crispri``): the on-target rule, the reachable genes.
        cell_line_sex: ``LINE=female|male`` entries over :data:`coreperturb.data._genes.KNOWN_SEX`.
        design: How the table's pairs were chosen: ``auto`` (recorded by the loader, else estimated),
            ``complete``, ``case_control`` or ``uniform``; sets the genome scale (docs: genome scale).
        lists_cut_from: ``case_control``: lists of this many DE genes or more may be cut (PerturbQA: 13).
        cross_line: With several cell lines, each line's CORE model also reads the other lines' training rows
            as evidence (chosen on training data); ``False``: its own screen only (the PerturbQA protocol).
        fit_lines: Fit models for these lines only (default: every line with training rows); the other lines'
            rows are their evidence and nothing else (e.g. public screens beside your own).
        other_lines_weight: K: with ``cross_line``, a line's CORE answer pools its own (weight ``w = N / (N + K)``,
            N: its own training perturbations) with the other lines' (``1 - w``); 0: its own alone (docs: several
            screens).
        other_lines_pool: How the two answers are pooled: ``probabilities`` (``w * own + (1 - w) * others``) or
            ``log_odds`` (``expit(w * logit(own) + (1 - w) * logit(others))``, a logarithmic opinion pool).
        other_lines_mean: How the other lines' answers are averaged into ``others``: ``probabilities`` (their
            mean) or ``log_odds`` (``expit`` of their log-odds' mean).
        no_screen_mean: How the screened lines' answers are averaged into the answer for a line with no screen
            of its own: ``log_odds`` or ``probabilities``, as above.
        measured_pairs: How another line's measurement of a pair is read: ``labels`` (1 DE / 0 not DE, as
            measured), ``rates`` (the chance that a pair measured so in one line is DE in another, from the
            pairs two lines both asked: :func:`coreperturb.stages._unscreened.transfer_rates`) or
            ``gene_rates`` (that chance given how often the gene is DE in the line answered:
            :func:`coreperturb.stages._unscreened.transfer_curves`).
    """

    methods: tuple[str, ...] = ("core_voting",)
    seed: int = 0
    dataset: str = "perturbqa"
    all_rows: bool = False
    llm_config: LLMConfig = field(default_factory=LLMConfig)
    modality: str | None = None
    cell_line_sex: tuple[str, ...] = ()
    design: str = "auto"
    lists_cut_from: int | None = None
    cross_line: bool = True
    fit_lines: tuple[str, ...] = ()
    other_lines_weight: float = OTHER_LINES_WEIGHT
    other_lines_pool: str = OTHER_LINES_POOL
    other_lines_mean: str = OTHER_LINES_MEAN
    no_screen_mean: str = NO_SCREEN_MEAN
    measured_pairs: str = MEASURED_PAIRS

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", split_names(self.methods) or ())
        if not self.methods:
            raise ConfigError("no methods given")
        for m in self.methods:
            PREDICTORS.get(m)  # raises a clear error for unknown names
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        name = self.modality if self.modality is not None else DEFAULT_MODALITY.get(self.dataset, "crispri")
        object.__setattr__(self, "modality", modality(name).name)
        object.__setattr__(self, "cell_line_sex", tuple(split_names(self.cell_line_sex) or ()))
        object.__setattr__(self, "fit_lines", tuple(split_names(self.fit_lines) or ()))
        parse_sexes(self.cell_line_sex)  # a clear error for a bad entry
        if self.design not in DESIGNS or (self.lists_cut_from is not None and self.lists_cut_from < 1):
            raise ConfigError(f"design must be one of {', '.join(DESIGNS)} and lists_cut_from >= 1")
        if not self.other_lines_weight >= 0:  # NaN too
            raise ConfigError(f"other_lines_weight must be >= 0, got {self.other_lines_weight}")
        if self.other_lines_pool not in POOLS or self.measured_pairs not in MEASURED_READINGS:
            raise ConfigError(
                f"other_lines_pool must be one of {', '.join(POOLS)} and measured_pairs one of "
                f"{', '.join(MEASURED_READINGS)}; got {self.other_lines_pool!r}, {self.measured_pairs!r}"
            )
        for name in ("other_lines_mean", "no_screen_mean"):
            if getattr(self, name) not in POOLS:
                raise ConfigError(f"{name} must be one of {', '.join(POOLS)}; got {getattr(self, name)!r}")

    def llm_settings(self) -> LLMSettings:
        """How LLM methods reach their model (:meth:`LLMConfig.settings`)."""
        return self.llm_config.settings()


@dataclass(frozen=True)
class EvaluateConfig:
    """How the benchmark evaluates.

    Attributes:
        bootstrap: Bootstrap resamples over test perturbations for 95% CIs (0 = none).
        max_queries: Score at most this many test queries per (cell line, task), sampled gene by gene so
            per-gene AUROC stays computable; every method is evaluated on the same sample.
    """

    bootstrap: int = 0
    max_queries: int | None = None

    def __post_init__(self) -> None:
        if self.bootstrap < 0:
            raise ConfigError("bootstrap must be >= 0")
        if self.max_queries is not None and self.max_queries < 2:
            raise ConfigError("max_queries must be >= 2")


@dataclass(frozen=True)
class BenchmarkConfig:
    """What a benchmark (and a fit) runs: data, KG, fit and evaluation settings.

    Build it from flat options with :meth:`from_options` (``BenchmarkConfig.from_options(data_dir=...,
    methods="core_voting")``); read a leaf with :meth:`option`.
    """

    data: DataConfig = field(default_factory=DataConfig)
    kg: KGConfig = field(default_factory=KGConfig)
    fit: FitConfig = field(default_factory=lambda: FitConfig(methods=DEFAULT_METHODS))
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def __post_init__(self) -> None:
        if self.data.user_data and not self.kg.user_files:
            raise ConfigError(
                "your data need a KG: a KG directory (kg_dir) and/or your own files (kg_edges NAME=PATH, "
                "kg_gmt NAME=PATH, kg_structures)"
            )

    @classmethod
    def from_options(cls, **options: Any) -> BenchmarkConfig:
        """Build the tree from flat options named as its leaves (``None`` = the default).

        Raises:
            ConfigError: An unknown option, or a value a section rejects.
        """
        sections = _section_fields()
        unknown = sorted(set(options) - {k for keys in sections.values() for k in keys})
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")

        def part(kind: type) -> dict[str, Any]:
            return {k: v for k, v in options.items() if k in sections[kind] and v is not None}

        fit = part(FitConfig)
        if "methods" not in fit:
            fit["methods"] = DEFAULT_METHODS
        return cls(
            DataConfig(**part(DataConfig)),
            KGConfig(**part(KGConfig)),
            FitConfig(**fit, llm_config=LLMConfig(**part(LLMConfig))),
            EvaluateConfig(**part(EvaluateConfig)),
        )

    def options(self) -> dict[str, Any]:
        """The flat leaves (the inverse of :meth:`from_options`)."""
        out: dict[str, Any] = {}
        for section in (self.data, self.kg, self.fit, self.fit.llm_config, self.evaluate):
            for f in dataclasses.fields(section):
                if f.name != "llm_config":
                    out[f.name] = getattr(section, f.name)
        return out

    def option(self, name: str) -> Any:
        """One leaf by name."""
        return self.options()[name]

    def replace(self, **options: Any) -> BenchmarkConfig:
        """A copy with some leaves changed."""
        return BenchmarkConfig.from_options(**{**self.options(), **options})


def _section_fields() -> dict[type, tuple[str, ...]]:
    return {
        kind: tuple(f.name for f in dataclasses.fields(kind) if f.name != "llm_config")
        for kind in (DataConfig, KGConfig, FitConfig, LLMConfig, EvaluateConfig)
    }


LEAVES: tuple[str, ...] = tuple(k for keys in _section_fields().values() for k in keys)
"""Every leaf name of the tree (= flag names, = config-file keys)."""

COMMAND_KEYS: dict[str, Any] = {
    "out": Path,
    "anndata": bool,
    "save_model": Path,
    "kg_store": str,
    "overwrite": bool,
    "threads": int,
}
"""Options of ``benchmark`` / ``fit`` themselves (not of the run) that a configuration file may also set."""


def _file_type(tp: Any) -> Any:
    """The type a configuration-file key accepts for a leaf of this type (lists for tuples)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _file_type(args[0]) if len(args) == 1 else tp
    if origin is tuple:
        return str | list[str]
    if tp is Path:
        return str
    return tp


def _build_file_model() -> type[BaseModel]:
    hints: dict[str, Any] = {}
    for kind in (DataConfig, KGConfig, FitConfig, LLMConfig, EvaluateConfig):
        resolved = typing.get_type_hints(kind)
        for f in dataclasses.fields(kind):
            if f.name != "llm_config":
                hints[f.name] = resolved[f.name]
    fields: dict[str, Any] = {k: (_file_type(tp) | None, None) for k, tp in hints.items()}
    fields.update({k: (_file_type(tp) | None, None) for k, tp in COMMAND_KEYS.items()})
    return create_model("ConfigFile", __config__=ConfigDict(extra="forbid"), **fields)


ConfigFile: type[BaseModel] = _build_file_model()
"""Every key a configuration file may set: the tree's leaves and :data:`COMMAND_KEYS` (derived, not
written again)."""

_PATH_KEYS = {"data_dir", "kg_dir", "response_cache", "out", "save_model"}
_FILE_LIST_KEYS = {"kg_edges", "kg_gmt", "kg_structures", "queries"}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML or YAML configuration file.

    Returns:
        The keys the file sets (lists of names joined with commas, relative paths resolved against the
        file; old key spellings renamed).

    Raises:
        ConfigError: Naming the file and the offending key.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        if path.suffix.lower() == ".toml":
            raw = tomllib.loads(path.read_text())
        elif path.suffix.lower() in {".yaml", ".yml"}:
            try:
                import yaml
            except ImportError:
                raise ConfigError(
                    f"{path}: YAML configs need PyYAML (pip install pyyaml), or use TOML"
                ) from None
            raw = yaml.safe_load(path.read_text()) or {}
        else:
            raise ConfigError(f"{path}: configuration files must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table of settings at the top level")
    raw = {str(k).replace("-", "_"): v for k, v in raw.items()}
    if "api_key" in raw:
        raise ConfigError(f"{path}: do not store API keys in config files; set $COREPERTURB_API_KEY")
    for old, new in DEPRECATED_KEYS.items():
        if old in raw:
            import warnings

            warnings.warn(f"{path}: key {old!r} is now {new!r}", DeprecationWarning, stacklevel=2)
            raw.setdefault(new, raw.pop(old))
    try:
        cfg = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"{path}: key {key!r}: {err['msg']}") from None
    out: dict[str, Any] = {}
    for k, v in cfg.model_dump(exclude_none=True).items():
        if k in _FILE_LIST_KEYS:
            # (NAME=)PATH entries: keep a list; resolve relative paths against the file
            fixed = []
            for item in [v] if isinstance(v, str) else list(v):
                name, sep, p = str(item).rpartition("=") if k != "queries" else ("", "", str(item))
                pth = Path(p)
                if not pth.is_absolute():
                    pth = (path.parent / pth).resolve()
                fixed.append(f"{name}={pth}" if sep else str(pth))
            out[k] = fixed
            continue
        if isinstance(v, list):
            v = ",".join(map(str, v))
        if k in _PATH_KEYS:
            v = Path(v)
            if not v.is_absolute():
                v = (path.parent / v).resolve()
        out[k] = v
    return out


__all__ = [
    "COMMAND_KEYS",
    "DEFAULT_METHODS",
    "LEAVES",
    "BenchmarkConfig",
    "ConfigError",
    "ConfigFile",
    "CorePerturbError",
    "DataConfig",
    "EvaluateConfig",
    "FitConfig",
    "KGConfig",
    "LLMConfig",
    "load_config_file",
    "named_paths",
    "split_names",
]
