"""What the commands do, as library calls: fit to a model directory, predict to a file, set LLM stores.

Each function makes every check the command needs (one home per check) and reports progress through
callbacks, so the CLI only parses options, calls one function here and renders the result.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pandas as pd

from coreperturb._config import EXECUTORS, BenchmarkConfig
from coreperturb._defaults import EXECUTOR, PAIRS_PER_CHUNK, RAY_WORKERS
from coreperturb._deprecation import keyword_options, renamed_options
from coreperturb._files import exclusive
from coreperturb._model_files import KG_STORES, check_model_target, load_model, save_model
from coreperturb._pipeline import data_tasks, load_inputs
from coreperturb._profiling import Profile, profiling, stage
from coreperturb.errors import ConfigError, CorePerturbError
from coreperturb.report._prediction_files import SUFFIXES, CallTally, PredictionWriter, check_output_path
from coreperturb.stages import DEFAULT_RANK_BY, FittedModels, GridPlan, Ranking, fit, grid_plan, predict_grid
from coreperturb.stages._chunking import pair_chunks
from coreperturb.stages._flags import gene_notes, perturbation_notes
from coreperturb.stages._grids import score_pairs
from coreperturb.stages._names import query_lines, read_pairs, resolve_genes, resolve_perturbations
from coreperturb.stages._ranking import check_ranking

if TYPE_CHECKING:
    from coreperturb._util import Progress


def _no_progress(total: int, unit: str) -> AbstractContextManager[Progress]:
    return contextlib.nullcontext(lambda done, tot: None)


@dataclass(frozen=True)
class SplitNote:
    """Which rows a fit uses when the data hold test rows too."""

    n_train: int
    n_test: int
    n_test_perturbations: int
    all_rows: bool

    def message(self, all_rows_name: str = "all_rows") -> str:
        """One line, naming the setting that fits on every row as ``all_rows_name``."""
        if self.all_rows:
            return (
                f"fitting on every row, the {self.n_test} rows of {self.n_test_perturbations} test perturbations "
                f"too ({all_rows_name})"
            )
        return (
            f"fitting on the {self.n_train} rows with split == train; the {self.n_test} rows of "
            f"{self.n_test_perturbations} test perturbations are left out (for a benchmark); {all_rows_name} "
            "fits on them too"
        )


@dataclass(frozen=True)
class FitReport:
    """What :func:`fit_to_directory` did.

    Attributes:
        models: The fitted models.
        directory: The model directory written.
        note: How many rows were fitted on and which were left out (``None`` without test rows).
        seconds: Wall time.
    """

    models: FittedModels
    directory: Path
    note: SplitNote | None
    seconds: float


@renamed_options(progress="on_step")
@keyword_options
def fit_to_directory(
    config: BenchmarkConfig,
    out: str | Path,
    *,
    kg_store: str = "embed",
    overwrite: bool = False,
    on_step: Callable[[str], None] | None = None,
    llm_progress: Progress | None = None,
    on_note: Callable[[SplitNote], None] | None = None,
) -> FitReport:
    """Load the data and KG of ``config``, fit its methods and save a model directory.

    Uses the rows with ``split == train`` (every row with ``config.fit.all_rows``, or of a query table
    without a split column). Temporary inputs (the synthetic default) live in a private directory that is
    removed afterwards.

    ``on_step`` is called with a short message before each step (``progress`` before release 0.2),
    ``llm_progress`` with ``(done, total)`` while LLM methods score, ``on_note`` once, before fitting, with
    :attr:`FitReport.note`.

    Raises:
        CorePerturbError: Bad inputs, a failed fit, or a directory that cannot be written.
    """
    if kg_store not in KG_STORES:
        raise ConfigError(f"kg_store must be one of {', '.join(KG_STORES)}")
    say = on_step or (lambda msg: None)
    out = Path(out)
    t0 = time.perf_counter()
    check_model_target(out, overwrite=overwrite)  # before any work: an existing model or an unwritable folder
    with exclusive(out, "fit"):
        return _fit_and_save(
            config,
            out,
            kg_store=kg_store,
            overwrite=overwrite,
            say=say,
            llm_progress=llm_progress,
            on_note=on_note,
            t0=t0,
        )


def _fit_and_save(
    config: BenchmarkConfig,
    out: Path,
    *,
    kg_store: str,
    overwrite: bool,
    say: Callable[[str], None],
    llm_progress: Progress | None,
    on_note: Callable[[SplitNote], None] | None,
    t0: float,
) -> FitReport:
    say("loading data and building the knowledge graph")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = load_inputs(config, Path(tmp), for_fit=True)
        frame = inputs.table.frame
        test = frame[frame["split"].astype(str) == "test"]
        note = None
        if len(test):
            note = SplitNote(
                int((frame["split"] == "train").sum()),
                len(test),
                test["perturbation"].nunique(),
                config.fit.all_rows,
            )
            if on_note is not None:
                on_note(note)
        models = fit(
            inputs.table,
            inputs.kg,
            config.fit,
            on_step=say,
            llm_progress=llm_progress,
            workdir=out.parent,
            kg_recipe=inputs.kg_recipe,
        )
    say(f"saving the model to {out}")
    save_model(models, out, kg_store=kg_store, overwrite=overwrite)
    return FitReport(models, out, note, time.perf_counter() - t0)


@keyword_options
def configure_llm(
    models: FittedModels,
    *,
    result_store: Path | None = None,
    response_cache: Path | None = None,
    reasoning_tokens: int | None = None,
) -> None:
    """Point a fitted model's LLM methods at a result store and response cache (and rationale length)."""
    for m in models.models.values():
        if m.uses_llm:
            m.set_params(result_store=result_store, response_cache=response_cache)
            if reasoning_tokens is not None:
                m.set_params(reasoning_tokens=reasoning_tokens)


@dataclass(frozen=True)
class PredictReport:
    """What :func:`predict_to_file` wrote: rows, scored pairs, methods, wall time and (with ``profile``)
    the seconds per stage."""

    path: Path
    rows: int
    pairs: int
    methods: tuple[str, ...]
    seconds: float
    profile: Profile | None = None
    listed: dict[str, int] | None = None
    """With a ranking: rows listed per perturbation (or gene; ``LINE/METHOD/NAME`` when the file holds
    several lines or methods), zero for those where none passed the floor."""
    ranking: Ranking | None = None
    notes: tuple[str, ...] = ()
    """Lines about the named perturbations (screened ones, ones the KG hardly knows):
    :func:`coreperturb.stages._flags.perturbation_notes`."""
    cell_lines: tuple[str, ...] = ()
    """The cell lines answered (with a query table, the lines it names that the model holds no screen of)."""
    calls: CallTally | None = None
    """The calls of the rows written, per method, and each method's highest P(DE) without a ``DE`` call."""

    def short_lists(self) -> dict[str, int]:
        """The ranked groups listing fewer than ``top`` rows (few responders above the floor), fewest first."""
        if self.listed is None or self.ranking is None:
            return {}
        top = self.ranking.top
        return dict(sorted(((k, v) for k, v in self.listed.items() if v < top), key=lambda kv: kv[1]))


def read_names(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    """``all`` → ``None``; else comma-separated names, where ``@file`` items add one name per line of the
    file (``#`` comments), e.g. ``FTH1,TFRC,@more.txt``.

    Raises:
        CorePerturbError: A listed file is missing, unreadable or empty, or no name is given.
    """
    if value is None:
        return None
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    if len(items) == 1 and items[0].lower() == "all":
        return None
    names: list[str] = []
    for item in items:
        if not item.startswith("@"):
            if item:
                names.append(item)
            continue
        path = Path(item[1:])
        if not path.is_file():
            raise CorePerturbError(f"{path}: file of {what} not found")
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CorePerturbError(f"{path}: cannot be read: {exc}") from None
        listed = [n for n in (ln.split("#", 1)[0].strip() for ln in lines) if n]
        if not listed:
            raise CorePerturbError(f"{path}: no {what} listed")
        names.extend(listed)
    if not names:
        raise CorePerturbError(f"no {what} given")
    return list(dict.fromkeys(names))


def _methods_and_lines(
    models: FittedModels, methods: Sequence[str] | None, cell_lines: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    meths = list(methods) if methods else []
    if meths == ["all"]:
        meths = list(models.methods)
    meths = meths or [models.default_method]
    for m in meths:
        if m not in models.methods:
            raise CorePerturbError(f"method {m!r} is not in the model; it holds {', '.join(models.methods)}")
    return meths, models.require_cell_lines(cell_lines or None, unscreened=True)


def _known(models: FittedModels, names: list[str] | None, what: str) -> list[str] | None:
    """Resolve names, warn about renamed / unknown ones, and stop when none is known."""
    if names is None:
        return None
    res = resolve_perturbations(models, names) if what == "perturbation" else resolve_genes(models, names)
    res.require_some(what)
    return list(dict.fromkeys(res.names))


@renamed_options(progress="progress_bar")
@keyword_options
def predict_to_file(
    model: FittedModels | str | Path,
    out: str | Path,
    *,
    perturbations: Sequence[str] | str | None = None,
    genes: Sequence[str] | str | None = "all",
    queries: str | Path | None = None,
    cell_lines: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    ranking: Ranking | None = None,
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
    executor: str = EXECUTOR,
    ray_address: str | None = None,
    ray_workers: int = RAY_WORKERS,
    response_cache: Path | None = None,
    reasoning_tokens: int | None = None,
    progress_bar: Callable[[int, str], AbstractContextManager[Progress]] | None = None,
    profile: bool = False,
) -> PredictReport:
    """Score perturbations × genes (or the listed pairs of a ``queries`` table) and stream them to ``out``.

    Args:
        model: Fitted models or a model directory.
        out: ``.parquet``, ``.csv`` or ``.h5ad`` (checked before any work).
        perturbations: Names, ``"all"`` (every candidate of each cell line) or ``"P1,@file.txt"``.
        genes: Readout genes, ``"all"`` (the line's training readouts) or names / ``@file`` items.
        queries: A table of pairs (perturbation or pert, gene, optional cell_line) instead of the grid.
        cell_lines: Cell lines (default: all in the model).
        methods: Methods, or ``["all"]`` (default: the model's CORE method).
        ranking: Keep the best rows per perturbation or gene (grids only).
        pairs_per_chunk: Pairs scored at once (bounds memory).
        executor: ``local`` or ``ray`` (chunks on Ray Data workers; grids only).
        ray_address: Ray cluster address.
        ray_workers: Concurrent Ray workers.
        response_cache: The LLM methods' shared response cache.
        reasoning_tokens: Override the LLM methods' rationale length.
        progress_bar: ``progress_bar(total, unit)`` (was ``progress``) is a context manager that yields a
            ``tick(done, total)`` callback (e.g. a progress bar).
        profile: Time the stages (retrieval, features, trees, tables, writing; :mod:`coreperturb._profiling`)
            into ``PredictReport.profile``.

    Raises:
        CorePerturbError: Bad options, unknown names only, or nothing to predict.
    """
    out = Path(out)
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; use local or ray")
    if out.suffix.lower() not in SUFFIXES:
        raise CorePerturbError(f"{out}: a prediction file must end in {', '.join(SUFFIXES)}")
    check_output_path(out)  # before any work: a directory or an unwritable folder stops here
    models = model if isinstance(model, FittedModels) else load_model(model)
    meths, lines = _methods_and_lines(models, methods, cell_lines)
    configure_llm(
        models,
        result_store=out.with_name(out.stem + ".llm_cache.sqlite"),
        response_cache=response_cache,
        reasoning_tokens=reasoning_tokens,
    )
    if ranking is not None and ranking.per == "gene" and out.suffix.lower() == ".h5ad":
        raise CorePerturbError(
            f"{out}: a per-gene ranking keeps rows from every perturbation; write .parquet or .csv"
        )
    check_ranking(models, ranking, meths)
    start = progress_bar or _no_progress
    t0 = time.perf_counter()
    listed: dict[str, int] | None = None
    notes: tuple[str, ...] = ()
    with profiling() if profile else contextlib.nullcontext() as prof:
        if queries is not None:
            if ranking is not None:
                raise CorePerturbError(
                    "rankings are kept over perturbation × gene grids; a query table scores listed pairs"
                )
            if perturbations is not None:
                raise CorePerturbError("give either a query table or perturbations, not both")
            if executor == "ray":
                raise CorePerturbError(
                    "the ray executor scores perturbation × gene grids; a query table runs locally"
                )
            rows, lines, calls = _predict_pairs(
                models,
                Path(queries),
                lines,
                meths,
                out=out,
                pairs_per_chunk=pairs_per_chunk,
                start=start,
                chosen=bool(cell_lines),
            )
            n_pairs = rows // len(meths)
        else:
            if perturbations is None:
                raise CorePerturbError(
                    "name the perturbations to predict (names, @file.txt or all), or give a query table"
                )
            names = _known(models, read_names(perturbations, "perturbations"), "perturbation")
            gnames = _known(models, read_names(genes, "genes"), "gene")
            plan = grid_plan(models, names, genes=gnames, cell_lines=lines)
            if plan.n_pairs == 0:
                raise CorePerturbError("nothing to predict: no perturbation x gene pairs")
            with (
                PredictionWriter(out, plan, meths, background=True) as writer,
                start(plan.n_perturbations, "perturbations") as tick,
            ):
                if executor == "ray":
                    from coreperturb.stages._distributed import ray_predict_grid

                    frames = ray_predict_grid(
                        models,
                        plan,
                        meths,
                        pairs_per_chunk=pairs_per_chunk,
                        top=ranking,
                        progress=tick,
                        address=ray_address,
                        workers=ray_workers,
                    )
                else:
                    frames = predict_grid(
                        models,
                        plan,
                        methods=meths,
                        pairs_per_chunk=pairs_per_chunk,
                        top=ranking,
                        progress=tick,
                    )
                listed = _empty_lists(plan, meths, ranking)
                for frame in frames:
                    if listed is not None:
                        _count_listed(listed, frame, ranking, several=len(plan.units) > 1 or len(meths) > 1)
                    with stage("writer wait"):
                        writer.write(frame)
            rows, n_pairs, calls = writer.rows, plan.n_pairs, writer.calls
            if prof is not None:
                prof.add("writing", writer.busy_seconds)
            lines = [u[0] for u in plan.units]
            notes = tuple(
                (perturbation_notes(models, names, lines) if names else [])
                + (gene_notes(models, gnames, lines) if gnames else [])
            )
    seconds = time.perf_counter() - t0
    return PredictReport(
        out, rows, n_pairs, tuple(meths), seconds, prof, listed, ranking, notes, tuple(lines), calls
    )


def _list_name(line: str, method: str, name: str, *, several: bool) -> str:
    return f"{line}/{method}/{name}" if several else name


def _empty_lists(plan: GridPlan, methods: Sequence[str], ranking: Ranking | None) -> dict[str, int] | None:
    """Every group a ranking lists, with 0 rows so far."""
    if ranking is None:
        return None
    several = len(plan.units) > 1 or len(methods) > 1
    out: dict[str, int] = {}
    for line, perts, genes in plan.units:
        for m in methods:
            for name in perts if ranking.per == "perturbation" else genes:
                out[_list_name(line, m, name, several=several)] = 0
    return out


def _count_listed(
    listed: dict[str, int], frame: pd.DataFrame, ranking: Ranking | None, *, several: bool
) -> None:
    if ranking is None or frame.empty:
        return
    sizes = frame.groupby(["cell_line", "method", ranking.per], sort=False, observed=True).size()
    for idx, n in sizes.items():
        line, m, name = (str(v) for v in cast(tuple[object, ...], idx))
        key = _list_name(line, m, name, several=several)
        listed[key] = listed.get(key, 0) + int(n)


def _predict_pairs(
    models: FittedModels,
    path: Path,
    lines: list[str],
    methods: list[str],
    *,
    out: Path,
    pairs_per_chunk: int,
    start: Callable[[int, str], AbstractContextManager[Progress]],
    chosen: bool = False,
) -> tuple[int, list[str], CallTally]:
    """Score the listed pairs (per cell line), streamed to ``out``; returns the rows written, the lines
    answered (:func:`~coreperturb.stages._names.query_lines`; ``chosen``: the lines were named) and the calls."""
    pairs = read_pairs(models, path)
    lines = query_lines(models, pairs, lines, chosen=chosen, path=path)
    per_line = [pairs if "cell_line" not in pairs.columns else pairs[pairs["cell_line"] == x] for x in lines]
    total = sum(map(len, per_line))
    with PredictionWriter(out, None, methods) as writer, start(total, "pairs") as tick:
        done = 0
        for line, sub in zip(lines, per_line, strict=True):
            for part in pair_chunks(sub, pairs_per_chunk):
                for frame in score_pairs(models, line, part, methods):
                    writer.write(frame)
                done += len(part)
                tick(done, total)
    return writer.rows, lines, writer.calls


__all__ = [
    "DEFAULT_RANK_BY",
    "FitReport",
    "PredictReport",
    "configure_llm",
    "data_tasks",
    "fit_to_directory",
    "predict_to_file",
    "read_names",
    "read_pairs",
]
