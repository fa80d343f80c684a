"""``fit``: train every method on the training rows of every (cell line, task)."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from coreperturb._config import FitConfig
from coreperturb._deprecation import keyword_options, renamed_options
from coreperturb._threads import ensure_threads, retune
from coreperturb.data._design import SamplingDesign, cut_note, resolve_design
from coreperturb.data._schema import QueryTable
from coreperturb.errors import CorePerturbError
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.predictors._base import PREDICTORS, Predictor, make_predictor
from coreperturb.predictors._conformal import calibration_split
from coreperturb.predictors._effect import gene_prior
from coreperturb.stages._blend import blend_calibration
from coreperturb.stages._calibration_grid import grid_perturbations, grid_rows, with_genome_maps
from coreperturb.stages._fitted import (
    CALIBRATION_COLUMNS,
    CALIBRATION_EXTRA,
    TRAIN_COLUMNS,
    FittedModels,
    context_rows,
)

if TYPE_CHECKING:  # the LLM layer loads only where an LLM method is fitted
    from coreperturb._util import Progress
    from coreperturb.llm._backends import Backend

log = logging.getLogger(__name__)

MIN_TRAIN_PERTURBATIONS = 20
"""Fewer training perturbations per (cell line, task) than this: too few to learn anything per gene."""
MIN_GENES_WITH_POSITIVES = 30
"""Fewer readout genes than this with at least :data:`MIN_POSITIVES_PER_GENE` positive training
perturbations: per-gene rankings cannot be learned (nor checked)."""
MIN_POSITIVES_PER_GENE = 3
MIN_KG_PERTURBATIONS = 10
"""Fewer training perturbations than this known to the KG: the evidence retrieval has nothing to relate."""


class TooLittleDataWarning(UserWarning):
    """A fit on less data than :data:`MIN_TRAIN_PERTURBATIONS` and friends: its predictions are weak."""


def data_warnings(train: pd.DataFrame, kg: KnowledgeGraph) -> list[str]:
    """One line per (cell line, task) below a documented minimum (training perturbations, genes with
    positives, perturbations the KG knows), with the numbers."""
    out = []
    for (line, task), rows in train.groupby(["cell_line", "task"], sort=True):
        perts = pd.unique(rows["perturbation"].astype(str))
        pos = rows.loc[rows["label"] == 1].groupby("gene").size()
        n_genes = int((pos >= MIN_POSITIVES_PER_GENE).sum())
        n_kg = int(kg.has_info(list(perts)).sum()) if len(perts) else 0
        short = []
        if len(perts) < MIN_TRAIN_PERTURBATIONS:
            short.append(f"{len(perts)} training perturbations (minimum {MIN_TRAIN_PERTURBATIONS})")
        if n_genes < MIN_GENES_WITH_POSITIVES:
            short.append(
                f"{n_genes} readout genes with >= {MIN_POSITIVES_PER_GENE} positive training perturbations "
                f"(minimum {MIN_GENES_WITH_POSITIVES})"
            )
        if n_kg < min(MIN_KG_PERTURBATIONS, len(perts)) or (len(perts) and n_kg == 0):
            short.append(
                f"{n_kg} of {len(perts)} training perturbations known to the KG (minimum {MIN_KG_PERTURBATIONS})"
            )
        if short:
            out.append(f"{line}/{task}: too little data: {'; '.join(short)}; predictions will be weak")
    return out


PILOT_PERTURBATIONS = 100
"""Beside other lines' screens, a line's own screen of fewer training perturbations than this is a pilot: its
own model alone scored below the answer for a line with no screen (``benchmarks/new_line.py --own-model``,
HepG2: 50 random perturbations 0.64 per-gene AUROC, no screen 0.70), so its answers lean on the other lines'
(:attr:`FitConfig.other_lines_weight`)."""


def pilot_notes(train: pd.DataFrame, config: FitConfig) -> list[str]:
    """One line per fitted line whose own DE screen is a small pilot beside other lines' screens: how much
    its answers lean on the other lines', or that they cannot (no other line fitted, no blend)."""
    lines = sorted(set(train["cell_line"]))
    if not config.cross_line or len(lines) < 2:
        return []
    de = train.loc[train["task"] == "de"]
    fitted = config.fit_lines or lines
    k = config.other_lines_weight
    out = []
    for line in fitted:
        n = int(de.loc[de["cell_line"] == line, "perturbation"].nunique())
        if not 0 < n < PILOT_PERTURBATIONS:
            continue
        head = f"{line}/de: a pilot of {n} perturbations beside other lines' screens: "
        if k > 0 and any(other != line for other in fitted):
            out.append(
                head + f"its answers weigh its own model {n / (n + k):.2f} and the other lines' "
                f"{k / (n + k):.2f} (other_lines_weight {k:g}; docs: several screens)"
            )
        else:
            out.append(
                head + "its own model alone answers (no other line is fitted, or other_lines_weight is 0); "
                "below " + f"{PILOT_PERTURBATIONS} perturbations the other lines' answer scored higher "
                "(benchmarks/new_line.py; docs: several screens)"
            )
    return out


MIN_SHARED_GENES = 0.2
"""With several lines, a fitted line that shares fewer readout genes with the other lines' screens than this
share of the smaller gene set (its own or theirs) gets a note: their evidence has little to match (the four
PerturbQA lines share 81-94% of their genes; a small panel beside a genome-wide screen shares all of its own)."""


def shared_name_notes(train: pd.DataFrame, config: FitConfig) -> list[str]:
    """One line per fitted line that shares few readout genes with the other lines' screens (another naming
    of genes, e.g. Ensembl ids beside symbols): cross-line evidence and the blend then have little to read."""
    line_of = train["cell_line"].astype(str)
    lines = sorted(set(line_of))
    if not config.cross_line or len(lines) < 2:
        return []
    genes = {x: set(train.loc[line_of == x, "gene"].astype(str)) for x in lines}
    perts = {x: set(train.loc[line_of == x, "perturbation"].astype(str)) for x in lines}
    out = []
    for line in config.fit_lines or lines:
        if line not in genes:
            continue  # no training rows: fit stops on it with its own message
        others = [x for x in lines if x != line]
        theirs = set().union(*(genes[x] for x in others))
        shared = genes[line] & theirs
        if len(shared) >= MIN_SHARED_GENES * min(len(genes[line]), len(theirs)):
            continue
        both = perts[line] & set().union(*(perts[x] for x in others))
        out.append(
            f"{line}: {len(shared):,} of its {len(genes[line]):,} readout genes are among the other lines' "
            f"{len(theirs):,} and {len(both):,} of its {len(perts[line]):,} perturbations in their screens "
            f"({', '.join(others)}): their evidence has little to match; name genes and perturbations as they "
            "do (e.g. HGNC symbols in both, not Ensembl ids in one)"
        )
    return out


def _training_frame(table: QueryTable | pd.DataFrame, *, all_rows: bool = False) -> pd.DataFrame:
    frame = table.frame if isinstance(table, QueryTable) else table
    missing = [c for c in ("cell_line", "task", "perturbation", "gene", "label") if c not in frame.columns]
    if missing:
        raise CorePerturbError(f"training rows need columns {list(TRAIN_COLUMNS)}; missing {missing}")
    if "split" in frame.columns and not all_rows:
        frame = frame.loc[frame["split"].astype(str) == "train"]
    out = frame.loc[:, list(TRAIN_COLUMNS)].astype(
        {"cell_line": str, "task": str, "perturbation": str, "gene": str}
    )
    out["label"] = out["label"].astype(np.int8)
    if out.empty:
        raise CorePerturbError("no training rows (split == 'train') to fit on")
    return out.reset_index(drop=True)


def uses_llm(method: str) -> bool:
    """The registered predictor ``method`` asks an LLM (:attr:`Predictor.uses_llm`)."""
    return bool(getattr(PREDICTORS.get(method), "uses_llm", False))


def make_model(
    method: str,
    kg: KnowledgeGraph,
    config: FitConfig,
    *,
    backend: Backend | None = None,
    llm_progress: Progress | None = None,
    workdir: Path | None = None,
) -> Predictor:
    """An unfitted predictor configured as :func:`fit` (and the benchmark) configure it."""
    if uses_llm(method):
        llm = config.llm_config
        return make_predictor(
            method,
            kg,
            llm=backend or config.llm_settings(),
            result_store=Path(workdir) / "llm_cache.sqlite" if workdir is not None else None,
            response_cache=llm.response_cache,
            reasoning_tokens=llm.reasoning_tokens,
            calibration_queries=llm.calibration_queries,
            retry_failed=llm.retry_failed,
            progress=llm_progress,
            seed=config.seed,
            executor=_ray_executor(config) if llm.executor == "ray" else None,
        )
    if method == "gene_frequency":
        return make_predictor(method, kg)
    if method in ("core_voting", "core_voting_transfer") and config.dataset == "lincs":
        # drug neighbourhoods are sparser: let training CV choose the neighbourhood size
        return make_predictor(method, kg, seed=config.seed, top_k=(50, 100))
    return make_predictor(method, kg, seed=config.seed)


@renamed_options(progress="on_step")
@keyword_options
def fit(
    table: QueryTable | pd.DataFrame,
    kg: KnowledgeGraph,
    config: FitConfig | None = None,
    *,
    on_step: Callable[[str], None] | None = None,
    llm_progress: Progress | None = None,
    workdir: Path | None = None,
    kg_recipe: dict[str, Any] | None = None,
) -> FittedModels:
    """Fit every method on the training rows of every (cell line, task).

    Args:
        table: Query table; rows with ``split == "train"`` are used (all rows if there is no split column).
        kg: Knowledge graph.
        config: Methods and settings (default: CORE-Voting).
        on_step: Called with a short message before each model is fitted (was ``progress``).
        llm_progress: Called with ``(done, total)`` while LLM methods score calibration queries.
        workdir: Where LLM methods keep their per-run result store (`llm_cache.sqlite`; default: a private
            temporary directory). Answers go to the shared response cache (``config.llm_config.response_cache``).
        kg_recipe: How the KG was built, recorded in model files.

    Returns:
        The fitted models. CORE models of one line also read the other lines' training rows of the same task
        (:attr:`FitConfig.cross_line`; transfer methods always do), and their answers are blended with the other
        lines' answers (:attr:`FitConfig.other_lines_weight`, :mod:`coreperturb.stages._blend`).
    """
    config = config or FitConfig()
    ensure_threads()  # the CLI's thread policy for Python callers too (none of their own: the library's)
    say = on_step or (lambda msg: log.info(msg))
    train = _training_frame(table, all_rows=config.all_rows)
    source = f"{table.source}: " if isinstance(table, QueryTable) and table.source else ""
    for (line, task), rows in train.groupby(["cell_line", "task"], sort=True):
        if rows["label"].nunique() < 2:
            raise CorePerturbError(
                f"{source}{line}/{task}: every training label is {int(rows['label'].iloc[0])}; nothing to learn "
                "(a fit needs both positive and negative pairs)"
            )
    notes = data_warnings(train, kg) + pilot_notes(train, config) + shared_name_notes(train, config)
    for msg in notes:
        warnings.warn(msg, TooLittleDataWarning, stacklevel=2)
    design, line_designs = _designs(table, train, config, say)
    models: dict[tuple[str, str, str], Predictor] = {}
    calibration: list[pd.DataFrame] = []
    timings: dict[str, float] = {}
    backend: Backend | None = None
    present = set(train["cell_line"])
    unknown = [line for line in config.fit_lines if line not in present]
    if unknown:
        raise CorePerturbError(
            f"fit_lines names {', '.join(unknown)}, which have no training rows; lines with rows: "
            f"{', '.join(sorted(present))}"
        )
    for (line, task), rows in train.groupby(["cell_line", "task"], sort=True):
        if config.fit_lines and line not in config.fit_lines:
            continue  # evidence for the lines fitted, no model of its own
        rows = rows.reset_index(drop=True)
        for method in config.methods:
            retune()
            calibrating = uses_llm(method) and config.llm_config.calibration_queries > 0
            if calibrating:
                say(
                    f"{line}/{task}: {method} calibration (scoring up to {config.llm_config.calibration_queries} held-out "
                    "TRAIN queries)"
                )
            t = time.perf_counter()
            if uses_llm(method) and backend is None:
                from coreperturb.llm._backends import make_backend

                backend = make_backend(config.llm_settings())
            model = make_model(
                method, kg, config, backend=backend, llm_progress=llm_progress, workdir=workdir
            )
            context = _context_for(model, train, str(line), str(task), config)
            if not calibrating:
                read = sorted(pd.unique(context["cell_line"].astype(str))) if context is not None else []
                say(
                    f"{line}/{task}: fitting {method}"
                    + (f" with the screens of {', '.join(read)}" if read else "")
                )
            model.fit(rows, context=context)
            models[(str(line), str(task), method)] = model
            if not model.uses_llm:
                say(f"{line}/{task}: calibrating {method}'s calls on held-out training perturbations")
                d = line_designs.get(str(line), design) if task == "de" else None
                calibration.append(
                    calibration_rows(
                        make_model(method, kg, config), rows, context, config.seed, design=d
                    ).assign(cell_line=str(line), task=str(task), method=method)
                )
            timings[f"{line}/{task}/{method}"] = time.perf_counter() - t
    cal = pd.concat(calibration, ignore_index=True) if calibration else None
    fitted = FittedModels(
        kg,
        models,
        train,
        config,
        kg_recipe,
        timings,
        tuple(notes),
        calibration=cal,
        design=design,
        line_designs=line_designs,
    )
    return with_genome_maps(blend_calibration(fitted, say))


def _designs(
    table: QueryTable | pd.DataFrame, train: pd.DataFrame, config: FitConfig, say: Callable[[str], None]
) -> tuple[SamplingDesign, dict[str, SamplingDesign]]:
    """The fit's sampling design and, where the table joins sources (:attr:`QueryTable.parts`), each line's:
    every source's design resolved on its own training rows (a stated design holds for all)."""
    parts = table.parts if isinstance(table, QueryTable) else ()
    hint = table.design if isinstance(table, QueryTable) else None
    sources = [(p.source, p.design, train.loc[train["cell_line"].isin(p.cell_lines)]) for p in parts]
    first: SamplingDesign | None = None
    by_line: dict[str, SamplingDesign] = {}
    for source, part_hint, rows in sources or [("", hint, train)]:
        if rows.empty:
            continue  # a source whose lines have no training rows here
        d = resolve_design(config.design, rows, hint=part_hint, lists_cut_from=config.lists_cut_from)
        lines = sorted(pd.unique(rows["cell_line"].astype(str)))
        where = f" of {source} ({', '.join(lines)})" if parts else ""
        say(f"sampling design{where}: {d.describe()} ({d.source})")
        if (note := cut_note(rows, d)) and d.source == "stated":
            warnings.warn(note, UserWarning, stacklevel=3)  # a statement that looks wrong: never silent
        elif note:
            say(note)
        first = first or d
        by_line.update(dict.fromkeys(lines, d))
    assert first is not None  # a fit has training rows
    return first, by_line if len(set(by_line.values())) > 1 else {}


def _context_for(
    model: Predictor, train: pd.DataFrame, line: str, task: str, config: FitConfig
) -> pd.DataFrame | None:
    """The other lines' training rows of ``task`` a model of ``line`` is fitted with: always for a transfer
    method, by default (:attr:`FitConfig.cross_line`) for one that reads them; ``None`` when there are none."""
    if not (model.uses_context or (config.cross_line and model.reads_context)):
        return None
    rows = context_rows(train, line, task)
    return rows if model.uses_context or not rows.empty else None


def calibration_rows(
    model: Predictor,
    rows: pd.DataFrame,
    context: pd.DataFrame | None,
    seed: int,
    *,
    design: SamplingDesign | None = None,
) -> pd.DataFrame:
    """The conformal calibration rows of one unit: ``model`` (unfitted) is fitted on the training
    perturbations outside the calibration slice (:func:`calibration_split`) and scores the slice; each row
    keeps its gene, label, score and the gene's prior from the rows the model saw. With the DE task's
    ``design`` where it needs the genome correction, the slice's whole-list perturbations are also asked about
    every readout gene (rows marked ``grid``: :mod:`coreperturb.stages._calibration_grid`)."""
    hold = calibration_split(rows["perturbation"], seed)
    seen, cal = rows.loc[~hold].reset_index(drop=True), rows.loc[hold].reset_index(drop=True)
    if cal.empty or seen["label"].nunique() < 2:
        return pd.DataFrame(columns=[*CALIBRATION_COLUMNS[3:], *CALIBRATION_EXTRA])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the full fit has said what there is to say about the data
            model.fit(seen, context=context)
        scored = model.score(cal)
        grid_of = grid_perturbations(cal, design, seed)
        grid = grid_rows(model, cal, seen, grid_of, _readout(rows)) if grid_of else None
    except (ValueError, CorePerturbError) as exc:
        warnings.warn(
            f"{model.name}: no calls (conformal calibration on {len(seen)} rows of the other training "
            f"perturbations failed: {exc}); its predictions carry no call",
            TooLittleDataWarning,
            stacklevel=2,
        )
        return pd.DataFrame(columns=[*CALIBRATION_COLUMNS[3:], *CALIBRATION_EXTRA])
    asked = pd.DataFrame(
        {
            "gene": cal["gene"].astype(str).to_numpy(),
            "label": cal["label"].to_numpy(dtype=np.int8),
            "score": scored["score"].to_numpy(dtype=np.float64),
            "p_prior": gene_prior(seen, cal["gene"].to_numpy()),
            "perturbation": cal["perturbation"].astype(str).to_numpy(),
        }
    )
    return asked if grid is None else pd.concat([asked.assign(grid=False), grid], ignore_index=True)


def _readout(rows: pd.DataFrame) -> np.ndarray:
    """The readout genes of one unit's training rows, sorted."""
    return np.asarray(sorted(pd.unique(rows["gene"].astype(str))), dtype=object)


def _ray_executor(config: FitConfig) -> Any:
    from coreperturb.llm._distributed import RayExecutor

    llm = config.llm_config
    return RayExecutor(config.llm_settings(), llm.ray_workers, address=llm.ray_address)
