"""Fitted models: every predictor of a fit, with the KG and the training rows they predict from."""

from __future__ import annotations

import difflib
import hashlib
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from coreperturb._config import FitConfig
from coreperturb._util import nanmean
from coreperturb.data._design import (
    SamplingDesign,
    asking_factors,
    listing_rate,
    perturbation_design,
    row_weights,
    summarise,
)
from coreperturb.errors import CorePerturbError
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.predictors._base import Predictor
from coreperturb.predictors._conformal import DEFAULT_CONFIDENCE, MondrianConformal
from coreperturb.predictors._scale import MIN_SCALE_PERTURBATIONS, ScaleMap

_CACHE_LOCK = threading.RLock()

TRAIN_COLUMNS: tuple[str, ...] = ("cell_line", "task", "perturbation", "gene", "label")
"""Columns of the training rows a fitted model keeps (its evidence pool)."""
CALIBRATION_COLUMNS: tuple[str, ...] = ("cell_line", "task", "method", "gene", "label", "score", "p_prior")
"""Columns of the conformal calibration rows (:func:`coreperturb.stages._fitting.calibration_rows`); they
also carry ``perturbation`` (:data:`CALIBRATION_EXTRA`) since the genome scale weights rows by it."""
CALIBRATION_EXTRA: tuple[str, ...] = ("perturbation",)
"""Calibration columns that models of earlier releases lack (without them: no genome scale)."""


def _ready(value: Any) -> Any:
    """``value`` with the lookup state of its pandas index computed: pandas computes an index's uniqueness and
    lookup engine at first use, not thread-safely (pandas-dev/pandas #21150, #25870), and chunks scored side by
    side once read a cached unique index as non-unique ("cannot handle a non-unique multi-index")."""
    index = value if isinstance(value, pd.Index) else getattr(value, "index", None)
    if isinstance(index, pd.Index) and len(index):
        if index.is_unique:
            index.get_indexer(index[:1])
        else:
            index.get_indexer_non_unique(index[:1])
    return value


def genome_maps_of(design_record: dict[str, Any]) -> dict[tuple[str, str], ScaleMap]:
    """:attr:`FittedModels.genome_maps` from ``model.json``'s ``sampling_design`` record."""
    raw = design_record.get("genome_maps") or {}
    return {(str(line), str(k)): ScaleMap.from_dict(m) for line, maps in raw.items() for k, m in maps.items()}


def context_rows(rows: pd.DataFrame, cell_line: str, task: str) -> pd.DataFrame:
    """Training rows of ``task`` in every cell line other than ``cell_line``: the context of transfer
    methods (rows with ``split != "train"`` are left out where there is a split column)."""
    keep = (rows["cell_line"].astype(str) != cell_line) & (rows["task"].astype(str) == task)
    if "split" in rows.columns:
        keep &= rows["split"].astype(str) == "train"
    return rows.loc[keep].reset_index(drop=True)


@dataclass
class FittedModels:
    """Every fitted predictor of a :func:`fit` call, with the KG and training rows they need to predict.

    Attributes:
        kg: The knowledge graph the models were fitted with.
        models: Fitted predictors keyed by ``(cell_line, task, method)``.
        train: The training rows (columns :data:`TRAIN_COLUMNS`): the evidence pools, and the context of
            transfer methods.
        config: How they were fitted.
        kg_recipe: How the KG was built (directory, sources, user files), recorded in model files.
        timings: Seconds per fitted model.
        warnings: Data warnings of the fit (:func:`data_warnings`), recorded in model files.
        calibration: Conformal calibration rows (:data:`CALIBRATION_COLUMNS`) of every method that asks no
            LLM; ``None`` for models of earlier releases (no calls).
        confidence: Confidence of the calls (:mod:`coreperturb.predictors._conformal`), default 0.9.
        design: How the training table's pairs were chosen (:class:`SamplingDesign`); ``None`` for models of
            earlier releases (their numbers stay on the table's scale).
        line_designs: Each line's design where the lines came from tables of different designs (a user's
            screen beside public ones); empty: ``design`` holds for every line (:meth:`design_of`).
        genome_maps: The genome maps fitted at fit time on the genome grids of whole-list calibration
            perturbations, keyed ``(cell_line, method)`` (``(cell_line, "p_prior")``: the gene priors'); a
            unit without one (models of earlier releases) fits its map on the weighted calibration rows
            (:meth:`scale`).
    """

    kg: KnowledgeGraph
    models: dict[tuple[str, str, str], Predictor]
    train: pd.DataFrame
    config: FitConfig = field(default_factory=FitConfig)
    kg_recipe: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    calibration: pd.DataFrame | None = None
    confidence: float = DEFAULT_CONFIDENCE
    design: SamplingDesign | None = None
    line_designs: dict[str, SamplingDesign] = field(default_factory=dict)
    genome_maps: dict[tuple[str, str], ScaleMap] = field(default_factory=dict)

    def design_of(self, cell_line: str) -> SamplingDesign | None:
        """How the line's pairs were chosen (:attr:`line_designs`, else :attr:`design`)."""
        return self.line_designs.get(cell_line, self.design)

    def describe_design(self, cell_lines: Sequence[str] | None = None) -> str:
        """The sampling design in words: one for the fit, or per line (of ``cell_lines``, else every line)
        where the lines' tables differ."""
        if self.design is None:
            return "not recorded (a model of an earlier release)"
        if not self.line_designs:
            return self.design.describe()
        lines = [x for x in cell_lines or () if x in self.line_designs] or sorted(self.line_designs)
        return "; ".join(f"{x}: {self.line_designs[x].describe()}" for x in lines)

    def design_record(self) -> dict[str, Any]:
        """The design as ``model.json`` records it: the fit's, each line's where they differ (``by_line``), and
        per line what it says in numbers and the scale of its outputs."""
        assert self.design is not None
        by_line = {x: d.to_dict() for x, d in sorted(self.line_designs.items())}
        return {
            **self.design.to_dict(),
            **({"by_line": by_line} if by_line else {}),
            "lines": {
                line: {k: (v if np.isfinite(v) else None) for k, v in self.design_summary(line).items()}
                for line in self.cell_lines
                if "de" in self.tasks
            },
            "scale": {line: self.scale_name(line) for line in self.cell_lines},
            **({"genome_maps": self.genome_maps_record()} if self.genome_maps else {}),
        }

    def genome_maps_record(self) -> dict[str, dict[str, dict[str, float]]]:
        """:attr:`genome_maps` as ``model.json`` records them: ``{line: {method or "p_prior": map}}``."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (line, key), m in sorted(self.genome_maps.items()):
            out.setdefault(line, {})[key] = m.to_dict()
        return out

    @property
    def cell_lines(self) -> list[str]:
        """Cell lines with a fitted model, sorted."""
        return sorted({k[0] for k in self.models})

    @property
    def tasks(self) -> list[str]:
        """Tasks with a fitted model, sorted."""
        return sorted({k[1] for k in self.models})

    @property
    def methods(self) -> list[str]:
        """Fitted methods, in the order they were asked for."""
        return list(dict.fromkeys(k[2] for k in self.models))

    @property
    def thresholds(self) -> dict[tuple[str, str, str], float]:
        """Decision threshold of every model (chosen on training data)."""
        return {k: float(m.threshold_) for k, m in self.models.items()}

    @property
    def default_method(self) -> str:
        """The method ``predict`` uses when none is named: the first CORE method fitted, else the first."""
        for m in ("core_voting_transfer", "core_voting", "core_reasoning"):
            if m in self.methods:
                return m
        return self.methods[0]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. for Ray workers) with the cached values, without their locks."""
        return {k: v for k, v in self.__dict__.items() if k != "_cache_locks"}

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """A value derived from the (unchanging) models and training rows, computed once per key."""
        store: dict[str, Any] = self.__dict__.setdefault("_cache", {})
        if key not in store:
            # threads scoring side by side (the DE and direction models, chunks) compute a value once; one lock
            # per key, so that they compute different values at the same time (a value's computation only asks
            # for values it depends on, so no two threads can wait for each other's keys)
            with _CACHE_LOCK:
                lock = self.__dict__.setdefault("_cache_locks", {}).setdefault(key, threading.RLock())
            with lock:
                if key not in store:
                    store[key] = _ready(make())
        return store[key]

    def require_cell_lines(
        self, cell_lines: Sequence[str] | None = None, *, unscreened: bool = False
    ) -> list[str]:
        """``cell_lines`` (default: every line of the model), each checked to be in the model; with
        ``unscreened``, a line with no screen in the model is answered from the lines it holds
        (:meth:`source_lines`), with a warning (naming a held line its name is close to: a typo?).

        Raises:
            CorePerturbError: A cell line the model does not hold, naming those it does.
        """
        lines = list(cell_lines) if cell_lines is not None else self.cell_lines
        for line in lines:
            if line in self.cell_lines:
                continue
            close = difflib.get_close_matches(
                line.lower(), [c.lower() for c in self.cell_lines], n=1, cutoff=0.75
            )
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if not unscreened:
                raise CorePerturbError(
                    f"cell line {line!r} is not in the model{hint}; it holds {', '.join(self.cell_lines)}"
                )
            said: set[str] = self.cached("unscreened_said", set)
            if line not in said:  # once per model and line
                said.add(line)
                mean = "their log-odds" if self.config.no_screen_mean == "log_odds" else "their predictions"
                warnings.warn(
                    f"cell line {line!r} has no screen in this model{hint}: answered from the screens of "
                    f"{', '.join(self.cell_lines)} ({mean} averaged, calls calibrated on their "
                    "held-out perturbations; rows flagged no_screen)",
                    UserWarning,
                    stacklevel=2,
                )
        return lines

    def screened(self, cell_line: str) -> bool:
        """Whether the model holds this line's own screen."""
        return cell_line in self.cell_lines

    def source_lines(self, cell_line: str) -> tuple[str, ...]:
        """The screened lines that answer for ``cell_line``: the line itself where the model holds its screen;
        for a line with none, every line the model holds (their answers averaged)."""
        return (cell_line,) if self.screened(cell_line) else tuple(self.cell_lines)

    def model(self, cell_line: str, task: str, method: str) -> Predictor:
        """The fitted predictor of one unit.

        Raises:
            CorePerturbError: Naming what is available instead.
        """
        key = (cell_line, task, method)
        if key not in self.models:
            have = ", ".join("/".join(k) for k in self.models)
            raise CorePerturbError(f"no fitted model for {'/'.join(key)}; the model holds {have}")
        return self.models[key]

    def conformal(self, cell_line: str, task: str, method: str) -> MondrianConformal | None:
        """The calls' calibration of one unit (``None``: an LLM method, or a model without calibration)."""
        cal = self.calibration
        if cal is None or cal.empty:
            return None

        def make() -> MondrianConformal | None:
            pooled = None if self.screened(cell_line) else cell_line
            parts = [
                a
                for line in self.source_lines(cell_line)
                if (a := self._calibration_arrays(line, task, method, pooled_for=pooled))
            ]
            if not parts:
                return None
            if len(parts) == 1:
                scores, labels, prior, genes, weights = parts[0]
                return MondrianConformal.fit(scores, labels, prior, genes, weights=weights)
            # a line with no screen: the calibration rows of every line that answers for it, pooled
            cat = [np.concatenate([p[i] for p in parts]) for i in range(4)]
            w = np.concatenate([p[4] if p[4] is not None else np.ones(len(p[1])) for p in parts])
            return MondrianConformal.fit(cat[0], cat[1], cat[2], cat[3], weights=w)

        return self.cached(f"conformal/{cell_line}/{task}/{method}", make)

    def _calibration_arrays(
        self, cell_line: str, task: str, method: str, *, pooled_for: str | None = None
    ) -> tuple[Any, ...]:
        """``(scores, labels, priors, genes, weights)`` of one unit's calibration rows on the scale of its
        outputs (weights ``None``: every row counts once); ``()`` without rows. ``pooled_for``: a line with
        no screen that pools these rows; their DE scores then go to the genome as its answers do
        (:meth:`no_screen_genome`)."""
        cal = self.calibration
        assert cal is not None
        rows = cal.loc[(cal["cell_line"] == cell_line) & (cal["task"] == task) & (cal["method"] == method)]
        if rows.empty:
            return ()
        scores, prior = rows["score"].to_numpy(), rows["p_prior"].to_numpy()
        labels, genes = rows["label"].to_numpy(), rows["gene"].to_numpy()
        if task == "de" and self.genome_scaled(cell_line):
            scale, prior_scale = self.scale(cell_line, method), self.prior_scale(cell_line)
            assert scale is not None and prior_scale is not None
            scores = (
                scale(scores)
                if pooled_for is None
                else self.no_screen_genome(pooled_for, method, scores, genes)
            )
            return scores, labels, prior_scale(prior), genes, self.calibration_weights(cell_line, rows)
        return scores, labels, prior, genes, None

    def calls(
        self,
        cell_line: str,
        task: str,
        method: str,
        scores: np.ndarray,
        *,
        prior: np.ndarray,
        genes: np.ndarray,
    ) -> np.ndarray:
        """The conformal call of each row at :attr:`confidence` (``""`` where the unit has no calibration)."""
        conf = self.conformal(cell_line, task, method)
        if conf is None:
            return np.full(len(scores), "", dtype=object)
        return conf.calls(scores, prior, genes, task, self.confidence)

    def genome_scaled(self, cell_line: str) -> bool:
        """Whether this line's DE probabilities, priors and calls are corrected to the genome scale: the
        design samples not-DE pairs (``case_control``) and the calibration rows name their perturbations."""
        cal = self.calibration
        design = self.design_of(cell_line)
        return bool(
            design is not None
            and design.corrects
            and cal is not None
            and "perturbation" in cal.columns
            and self.cached(
                f"calibrated/{cell_line}",
                lambda: bool(((cal["cell_line"] == cell_line) & (cal["task"] == "de")).any()),
            )
        )

    def scale_name(self, cell_line: str) -> str:
        """``genome`` or ``table`` (the training table's sample: models of earlier releases); one word for
        every output that says which scale its numbers are on."""
        design = self.design_of(cell_line)
        if design is None:
            return "table"
        return "genome" if not design.corrects or self.genome_scaled(cell_line) else "table"

    def perturbation_design(self, cell_line: str) -> pd.DataFrame:
        """Per training perturbation of the line's DE rows: :func:`perturbation_design` (computed once)."""
        design = self.design_of(cell_line) or SamplingDesign("uniform", None, "none")
        return self.cached(
            f"design/{cell_line}",
            lambda: perturbation_design(
                self.training_rows(cell_line, "de"), len(self.readout_genes(cell_line, "de")), design
            ),
        )

    def not_de_share(self, cell_line: str) -> float:
        """The median share of a training perturbation's not-DE genes the line's table asks (1 without any):
        the prior correction, and where a genome map's fit starts."""
        design = self.perturbation_design(cell_line)
        return float(np.median(design["not_de_share"])) if len(design) else 1.0

    def design_summary(self, cell_line: str) -> dict[str, float]:
        """The line's design in numbers (:func:`coreperturb.data._design.summarise`), with
        ``asking_factor_top``: how often the genes listed DE most often (the top bin of
        :data:`~coreperturb.data._design.ASKING_BINS`) are asked as not-DE genes, relative to the mean gene."""
        out = summarise(self.perturbation_design(cell_line), len(self.readout_genes(cell_line, "de")))
        rate = listing_rate(self.training_rows(cell_line, "de"))
        top = self.asking_factors(cell_line).get(str(rate.idxmax()), np.nan) if len(rate) else np.nan
        out["asking_factor_top"] = float(top)
        return out

    def asking_factors(self, cell_line: str) -> pd.Series:
        """Per readout gene of the line's DE training rows: how often the table asks it as a not-DE gene
        relative to the mean gene (:func:`asking_factors`, binned by its training DE rate; computed once)."""

        def make() -> pd.Series:
            rows = self.training_rows(cell_line, "de")
            design = self.perturbation_design(cell_line)
            rate = listing_rate(rows)
            if not (self.design_of(cell_line) or SamplingDesign("uniform")).corrects:
                return pd.Series(1.0, index=rate.index)
            return asking_factors(rows, rate, design.index[design["whole"].to_numpy(dtype=bool)])

        return self.cached(f"asking/{cell_line}", make)

    def calibration_weights(self, cell_line: str, rows: pd.DataFrame) -> np.ndarray:
        """Genome weight of calibration (or any labelled DE) rows of the line (:func:`row_weights`, each
        not-DE row's gene's asking factor included)."""
        factor = self.asking_factors(cell_line).reindex(rows["gene"].astype(str)).fillna(1.0).to_numpy()
        return row_weights(
            rows["perturbation"].to_numpy(),
            rows["label"].to_numpy(),
            self.perturbation_design(cell_line),
            gene_factor=factor,
        )

    def _fit_scale(self, cell_line: str, key: str, method: str | None) -> ScaleMap | None:
        if not self.genome_scaled(cell_line):
            return None
        on_grid = self.genome_maps.get((cell_line, method or key))
        if on_grid is not None:  # fitted at fit time on every readout gene of whole-list perturbations
            return on_grid
        cal = self.calibration
        assert cal is not None
        rows = cal.loc[(cal["cell_line"] == cell_line) & (cal["task"] == "de")]
        if method is not None:
            rows = rows.loc[rows["method"] == method]
        else:  # the priors: every method's rows share the split and the priors; one method's rows suffice
            rows = rows.loc[rows["method"] == rows["method"].iloc[0]] if len(rows) else rows
        share = self.not_de_share(cell_line)
        if rows.empty:  # an LLM method has no calibration rows: the prior correction alone
            return ScaleMap.prior_shift(share)
        w = self.calibration_weights(cell_line, rows)
        if rows.loc[w > 0, "perturbation"].nunique() < MIN_SCALE_PERTURBATIONS:
            return ScaleMap.prior_shift(share)
        return ScaleMap.fit(rows[key].to_numpy(), rows["label"].to_numpy(), w, share=share)

    def scale(self, cell_line: str, method: str) -> ScaleMap | None:
        """The map of one method's DE probabilities to the genome scale (``None``: none needed, or none
        possible; :mod:`coreperturb.predictors._scale`): the one fitted on the calibration grid
        (:attr:`genome_maps`), else one fitted on the weighted calibration rows (models of earlier releases)."""
        return self.cached(f"scale/{cell_line}/{method}", lambda: self._fit_scale(cell_line, "score", method))

    def no_screen_genome(
        self, cell_line: str, method: str, scores: np.ndarray, genes: np.ndarray
    ) -> np.ndarray:
        """A line with no screen: its DE probabilities on the table's scale (the source lines' answers
        averaged there) on the genome scale, each row the mean of the maps (:meth:`scale`) of the source lines
        that read its gene out (of every source line for a gene none reads out: its answer is their models'
        alone, as a screened line's query of a gene it never read out); a source line without a map keeps the
        table's number. Averaging on the table's scale, then mapping, was chosen on training pairs over
        averaging genome-scale answers (``benchmarks/new_line.py --choose``)."""
        p = np.asarray(scores, dtype=np.float64)
        g = pd.Index(np.asarray(genes).astype(str))
        mapped, reads = [], []
        for line in self.source_lines(cell_line):
            to_genome = self.scale(line, method)
            mapped.append(p if to_genome is None else to_genome(p))
            reads.append(g.isin(self.readout_genes(line, "de")))
        anyone = np.any(reads, axis=0)
        return nanmean([np.where(r | ~anyone, m, np.nan) for m, r in zip(mapped, reads, strict=True)])

    def prior_scale(self, cell_line: str) -> ScaleMap | None:
        """The map of the line's gene priors (the gene-frequency score) to the genome scale."""
        return self.cached(f"prior_scale/{cell_line}", lambda: self._fit_scale(cell_line, "p_prior", None))

    def training_rows(self, cell_line: str, task: str) -> pd.DataFrame:
        """Training rows of one unit (their positions are found once)."""
        t = self.train
        at = self.cached(
            f"rows/{cell_line}/{task}",
            lambda: np.flatnonzero(((t["cell_line"] == cell_line) & (t["task"] == task)).to_numpy()),
        )
        return t.iloc[at].reset_index(drop=True)

    def context_rows(self, cell_line: str, task: str) -> pd.DataFrame:
        """Training rows of ``task`` in every other cell line (the context of transfer methods)."""
        return context_rows(self.train, cell_line, task)

    def evidence_lines(self, cell_line: str, task: str, method: str) -> tuple[str, ...]:
        """The other cell lines whose training rows one model reads as evidence (empty: its own screen only)."""
        model = self.models.get((cell_line, task, method))
        context = getattr(model, "context_", None)
        return tuple(sorted(map(str, context.pools))) if context is not None else ()

    def screens(self) -> list[dict[str, Any]]:
        """The screens the models learned from, one per (cell line, task): rows, perturbations, genes, DE (or up)
        rows and a digest of the rows (sha256 of their (perturbation, gene, label) hashes, sorted)."""
        out = []
        for (line, task), rows in self.train.groupby(["cell_line", "task"], sort=True, observed=True):
            key = rows[["perturbation", "gene", "label"]].astype({"perturbation": str, "gene": str})
            hashed = np.sort(pd.util.hash_pandas_object(key, index=False).to_numpy())
            out.append(
                {
                    "cell_line": str(line),
                    "task": str(task),
                    "rows": len(rows),
                    "perturbations": int(rows["perturbation"].nunique()),
                    "genes": int(rows["gene"].nunique()),
                    "positive_rows": int(rows["label"].sum()),
                    "digest": hashlib.sha256(hashed.tobytes()).hexdigest(),
                }
            )
        return out

    def training_perturbations(self, cell_line: str, task: str = "de") -> pd.Index:
        """Perturbations observed in the training rows of one unit (computed once)."""
        return self.cached(
            f"training_perturbations/{cell_line}/{task}",
            lambda: pd.Index(pd.unique(self.training_rows(cell_line, task)["perturbation"])),
        )

    def readout_genes(self, cell_line: str, task: str = "de") -> pd.Index:
        """Genes observed in the training rows of one unit (sorted; computed once); for a line with no
        screen, those of the lines that answer for it."""

        def make() -> pd.Index:
            genes = [self.training_rows(line, task)["gene"] for line in self.source_lines(cell_line)]
            return pd.Index(sorted(pd.unique(pd.concat(genes)))) if genes else pd.Index([])

        return self.cached(f"readout_genes/{cell_line}/{task}", make)
