"""What ``coreperturb serve`` answers, as plain functions over a fitted model (no web framework here).

:class:`PredictionService` loads a model once and answers the questions of the explorer on demand: the
ranked genes of one perturbation (milliseconds to a second: one perturbation × all readout genes), the
ranked perturbations of one gene (every candidate perturbation × that gene, computed once per gene and
cached), the explanation of one pair and a name search with the CLI's resolution rules. Given a prediction
file of ``coreperturb predict``, it reads rankings from there instead of scoring.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from coreperturb._defaults import EVIDENCE_ROWS, GENE_JOBS, TOP
from coreperturb._explanations import explain_checked
from coreperturb.errors import CorePerturbError
from coreperturb.predictors._core_voting import CoreVoting
from coreperturb.serve._turns import Kind, Turns
from coreperturb.stages import (
    DEFAULT_RANK_BY,
    GRID_COLUMNS,
    RANK_BY,
    FittedModels,
    candidate_perturbations,
    grid_plan,
    predict_grid,
    rank_predictions,
    resolve_genes,
    resolve_perturbations,
)
from coreperturb.stages._chunking import MAX_PERTURBATIONS_PER_CHUNK
from coreperturb.stages._names import known_perturbations
from coreperturb.stages._ranking import MIN_EXCESS, check_ranking

log = logging.getLogger(__name__)

RESULT_COLUMNS = GRID_COLUMNS
"""The columns of a ranking answer: those of ``coreperturb predict``."""


class NotFound(CorePerturbError):
    """A name the model does not know (with suggestions)."""

    def __init__(self, message: str, suggestions: list[str]) -> None:
        super().__init__(message)
        self.suggestions = suggestions


class Pending(CorePerturbError):
    """An answer being computed in the background (a gene ranking over every candidate perturbation)."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"scoring {total} candidate perturbations: {done} done")
        self.done = done
        self.total = total


class Busy(CorePerturbError):
    """Too many background computations at once (HTTP 429)."""


class BadRequest(CorePerturbError):
    """A request the service cannot answer as asked (e.g. a direction ranking without a direction model)."""


@dataclass(frozen=True)
class Ranked:
    """A ranking answer: the query, its canonical name, what it was resolved from, and the rows."""

    query: str
    name: str
    renamed_from: str | None
    flag: str
    rows: pd.DataFrame


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        value = make()
        with self.lock:
            self.data[key] = value
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return value


class PredictionService:
    """Answers explorer queries over one fitted model.

    Args:
        models: Fitted models (from :func:`coreperturb.load_model`).
        predictions: Optional frame of ``coreperturb predict`` output (GRID_COLUMNS); rankings read it
            for the perturbations and genes it holds.
        cache_size: Perturbation rankings kept (gene rankings, minutes each to compute, are kept apart:
            the last ``gene_cache_size``, never pushed out by perturbation answers).
        gene_cache_size: Gene rankings kept.
        max_gene_jobs: Gene rankings computed at once; a request for another gene is refused
            (:class:`Busy`, HTTP 429) until one ends.
        idle_job_s: A gene ranking that nobody has asked about for this long is cancelled.
        answer_within_s: How long a request for a gene ranking waits for it before it is told to come back
            (:class:`Pending`): one gene over the K562 candidates takes about 15 s on 2 cores, so the page
            usually answers at once.
        gene_chunk: Candidate perturbations scored per turn of a gene ranking (answers someone waits for
            go between turns).
    """

    def __init__(
        self,
        models: FittedModels,
        predictions: pd.DataFrame | None = None,
        *,
        cache_size: int = 64,
        gene_cache_size: int = 16,
        max_gene_jobs: int = GENE_JOBS,
        idle_job_s: float = 120.0,
        answer_within_s: float = 30.0,
        gene_chunk: int = MAX_PERTURBATIONS_PER_CHUNK,
    ):
        if max_gene_jobs < 1:
            raise BadRequest("max_gene_jobs must be >= 1")
        self.max_gene_jobs = max_gene_jobs
        self.idle_job_s = idle_job_s
        self.answer_within_s = answer_within_s
        self.gene_chunk = gene_chunk
        self.models = models
        self.predictions = predictions
        self.method = models.default_method
        self.cell_lines = models.cell_lines
        # one scoring at a time (the fitted models build caches lazily, not safe from two threads at once:
        # two at a time failed requests under load), an explanation before a ranking before a background chunk
        self._turns = Turns()
        self._cache = _LRU(cache_size)
        self._gene_cache = _LRU(gene_cache_size)
        self._known = sorted(set(known_perturbations(models)))
        self._genes = sorted(pd.unique(models.train["gene"].astype(str)))
        self._known_set = set(self._known)
        self._gene_set = set(self._genes)
        self._candidates: dict[str, list[str]] = {}
        self._jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self._jobs_lock = threading.Lock()

    # -- names ----------------------------------------------------------------------------------------

    def cell_line(self, line: str | None) -> str:
        """The cell line asked for (default: the model's first)."""
        if line is None:
            return self.cell_lines[0]
        try:
            return self.models.require_cell_lines([line])[0]
        except CorePerturbError as exc:
            raise BadRequest(str(exc)) from None

    def resolve_perturbation(self, name: str) -> tuple[str, str | None]:
        """Canonical perturbation name and the raw name it was renamed from (None if exact)."""
        if name in self._known_set:
            return name, None
        res = resolve_perturbations(self.models, [name])
        if res.unknown:
            hint = res.suggestions.get(res.unknown[0], [])
            raise NotFound(res.unknown_message(res.unknown[0], "perturbation", suggest=False), hint)
        canon = res.names[0]
        return canon, (name if canon != name.strip() else None)

    def resolve_gene(self, name: str) -> tuple[str, str | None]:
        """Canonical readout gene and the raw name it was renamed from (None if exact)."""
        if name in self._gene_set:
            return name, None
        res = resolve_genes(self.models, [name])
        if res.unknown:
            hint = res.suggestions.get(res.unknown[0], [])
            raise NotFound(res.unknown_message(res.unknown[0], "gene", suggest=False), hint)
        canon = res.names[0]
        return canon, (name if canon != name.strip() else None)

    def search(self, q: str, limit: int = 10) -> dict[str, Any]:
        """Names starting with ``q`` (case-insensitive), perturbations and genes, and the CLI's resolution."""
        qu = q.strip().upper()
        perts = [n for n in self._known if n.upper().startswith(qu)][:limit]
        genes = [n for n in self._genes if n.upper().startswith(qu)][:limit]
        drug_names = {str(v): str(k) for k, v in self.models.kg.names.items()}
        drugs = [f"{v} ({k})" for v, k in drug_names.items() if v.upper().startswith(qu)][:limit]
        out: dict[str, Any] = {"query": q, "perturbations": perts, "genes": genes, "drugs": drugs}
        res = resolve_perturbations(self.models, [q])
        out["resolved"] = None if res.unknown else res.names[0]
        out["did_you_mean"] = res.suggestions.get(q.strip(), []) if res.unknown else []
        return out

    # -- rankings -------------------------------------------------------------------------------------

    def _check(self, rank_by: str) -> None:
        if rank_by not in RANK_BY:
            raise BadRequest(f"unknown rank_by {rank_by!r}; choose from {', '.join(RANK_BY)}")
        try:
            from coreperturb.stages import Ranking

            check_ranking(self.models, Ranking(1, rank_by), [self.method])
        except CorePerturbError as exc:
            raise BadRequest(str(exc)) from None

    def _from_file(self, column: str, name: str, line: str) -> pd.DataFrame | None:
        p = self.predictions
        if p is None:
            return None
        rows = p[(p[column] == name) & (p["cell_line"] == line) & (p["method"] == self.method)]
        return rows if len(rows) else None

    def perturbation(
        self,
        name: str,
        top: int = TOP,
        rank_by: str = DEFAULT_RANK_BY,
        cell_line: str | None = None,
        *,
        min_excess: float | None = MIN_EXCESS,
    ) -> Ranked:
        """The ``top`` genes of one perturbation, ranked by ``rank_by``, among those above the floor
        (``min_excess``; ``None``: every gene)."""
        self._check(rank_by)
        line = self.cell_line(cell_line)
        canon, renamed = self.resolve_perturbation(name)

        def score() -> pd.DataFrame:
            rows = self._from_file("perturbation", canon, line)
            if rows is None:
                with self._turns.hold(Kind.RANKING):
                    plan = grid_plan(self.models, [canon], cell_lines=[line])
                    rows = pd.concat(
                        list(predict_grid(self.models, plan, methods=[self.method])), ignore_index=True
                    )
            return rows

        rows = self._cache.get(("p", canon, line), score)
        ranked = rank_predictions(rows, top, rank_by=rank_by, per="perturbation", min_excess=min_excess)
        flag = str(rows["flag"].iloc[0]).replace("unknown_gene", "").strip(";") if len(rows) else ""
        return Ranked(name, canon, renamed, flag, ranked.reindex(columns=list(RESULT_COLUMNS)))

    def gene(
        self,
        name: str,
        top: int = TOP,
        rank_by: str = "down",
        cell_line: str | None = None,
        *,
        min_excess: float | None = MIN_EXCESS,
    ) -> Ranked:
        """The ``top`` candidate perturbations that move one gene most, ranked by ``rank_by``, among those
        above the floor (``min_excess``; ``None``: every perturbation).

        Without a prediction file this scores every candidate perturbation on the gene (on K562, 20,000
        perturbations: about 15 s on 2 cores). That runs in a background thread, chunk by chunk (answers about
        perturbations are served between chunks), and this waits up to ``answer_within_s`` for it; a ranking
        still not done raises :class:`Pending` with the progress. The ranking is then cached.

        Raises:
            Pending: The ranking is being computed.
        """
        self._check(rank_by)
        line = self.cell_line(cell_line)
        canon, renamed = self.resolve_gene(name)
        rows = self._from_file("gene", canon, line)
        if rows is None:
            with self._gene_cache.lock:
                rows = self._gene_cache.data.get(("g", canon, line))
            if rows is None:
                job = self._start_gene_job(canon, line)
                job["finished"].wait(self.answer_within_s)
                with self._gene_cache.lock:
                    rows = self._gene_cache.data.get(("g", canon, line))
                if rows is None:
                    raise Pending(int(job["done"]), int(job["total"]))
        ranked = rank_predictions(rows, top, rank_by=rank_by, per="gene", min_excess=min_excess)
        return Ranked(name, canon, renamed, "", ranked.reindex(columns=list(RESULT_COLUMNS)))

    def _start_gene_job(self, gene: str, line: str) -> dict[str, Any]:
        """Start (once) scoring every candidate on ``gene``; returns the job (``done``, ``total``, and
        ``finished``: an event set when it ends). A chunk is one scoring pass (about 1 s on 2 cores):
        answers someone waits for go between chunks."""
        key = (gene, line)
        chunk = self.gene_chunk
        with self._jobs_lock:
            job = self._jobs.get(key)
            if job is not None:
                job["asked"] = time.monotonic()
                return job
            if len(self._jobs) >= self.max_gene_jobs:
                raise Busy(
                    f"{len(self._jobs)} gene rankings are being computed (the most at once); ask again when one "
                    "has finished"
                )
            cands = self.candidates(line)
            job = {
                "done": 0,
                "total": len(cands),
                "parts": [],
                "asked": time.monotonic(),
                "finished": threading.Event(),
            }
            self._jobs[key] = job

        def work() -> None:
            try:
                for lo in range(0, len(cands), chunk):
                    if time.monotonic() - job["asked"] > self.idle_job_s:
                        log.info(
                            "gene ranking of %s cancelled: nobody asked for it for %.0f s",
                            gene,
                            self.idle_job_s,
                        )
                        return
                    with self._turns.hold(Kind.BACKGROUND):
                        plan = grid_plan(self.models, cands[lo : lo + chunk], genes=[gene], cell_lines=[line])
                        job["parts"].extend(
                            predict_grid(self.models, plan, methods=[self.method], pairs_per_chunk=50_000)
                        )
                    job["done"] = min(lo + chunk, len(cands))
                rows = pd.concat(job["parts"], ignore_index=True)
                self._gene_cache.get(("g", gene, line), lambda: rows)
            except Exception:  # pragma: no cover - logged; the next request starts again
                log.exception("scoring the candidates on %s failed", gene)
            finally:
                with self._jobs_lock:
                    self._jobs.pop(key, None)
                job["finished"].set()

        threading.Thread(target=work, name=f"gene-{gene}", daemon=True).start()
        return job

    def explain(
        self, perturbation: str, gene: str, cell_line: str | None = None, top: int = EVIDENCE_ROWS
    ) -> dict[str, Any]:
        """The explanation of one pair as JSON-ready data."""
        line = self.cell_line(cell_line)
        p, _ = self.resolve_perturbation(perturbation)
        g, _ = self.resolve_gene(gene)
        model = self.models.models.get((line, "de", self.method))
        if model is None or not model.shows_evidence:
            raise BadRequest(f"explanations need a CORE-Voting model; {self.method} is not one")
        with self._turns.hold(Kind.PAIR):  # one turn for the evidence and the direction
            try:  # explain's own path: the on-target rule, or a refusal of a pair without evidence
                ex = explain_checked(
                    cast(CoreVoting, model),
                    self.models.kg,
                    p,
                    g,
                    line=line,
                    task="de",
                    top=top,
                    models=self.models,
                )
            except CorePerturbError as exc:
                raise BadRequest(str(exc)) from None
            direction = self._direction(line, p, g)
        trained = p in self.models.cached(
            f"trained/{line}", lambda: set(self.models.training_perturbations(line, "de").astype(str))
        )
        evidence = ex.compact_evidence()
        return {
            "perturbation": p,
            "gene": g,
            "cell_line": line,
            "method": ex.method,
            "p_de": ex.p,
            "p_prior": ex.p_prior,
            "excess": ex.p - ex.p_prior,
            "effect": ex.effect,
            "call": ex.call,
            **direction,
            "on_target": ex.rule,
            "n_pos_evidence": ex.n_pos,
            "n_neg_evidence": ex.n_neg,
            "kg_information": ex.kg_info,
            "training_perturbation": trained,
            "summary": ex.summary(),
            "blend": ex.blend,
            "rests_on": ex.rests_on(),
            "evidence": records(evidence),
            "drivers": records(ex.drivers),
            "other_lines": ex.other_lines(),
            "similar_in_other_lines": records(ex.context[1]) if ex.context is not None else [],
        }

    def _direction(self, line: str, perturbation: str, gene: str) -> dict[str, Any]:
        """``p_up`` (P(up | DE)) and ``call_dir`` of one pair, as ``predict`` gives them (empty without a
        direction model); the caller holds the turn."""
        if (line, "dir", self.method) not in self.models.models:
            return {"p_up": None, "call_dir": ""}
        from coreperturb.stages._grids import score_direction

        pair = pd.DataFrame({"perturbation": [perturbation], "gene": [gene]})
        row = score_direction(self.models, line, pair, self.method)  # its DE is explain's already
        p_up = float(row["p_up"].to_numpy(dtype=np.float64)[0])
        return {"p_up": p_up if np.isfinite(p_up) else None, "call_dir": str(row["call_dir"].iat[0])}

    def candidates(self, line: str) -> list[str]:
        """Candidate perturbations of a cell line (computed once)."""
        if line not in self._candidates:
            self._candidates[line] = candidate_perturbations(self.models, line)
        return self._candidates[line]

    def examples(self, n: int = 5) -> list[str]:
        """A few candidate perturbations to try: those the KG knows most about (the most features over its
        relations), not the first in the alphabet."""

        def make() -> list[str]:
            cands = self.candidates(self.cell_lines[0])
            if not cands:
                return []
            kg = self.models.kg
            known = np.zeros(len(cands), dtype=np.int64)
            for r in kg.relation_names:
                known += np.asarray(kg.embed(cands, r).getnnz(axis=1), dtype=np.int64)
            best = sorted(range(len(cands)), key=lambda i: (-int(known[i]), cands[i]))
            return [cands[i] for i in best[:n]]

        return list(self.models.cached("serve/examples", make))

    def health(self) -> dict[str, Any]:
        """What the service holds."""
        return {
            "status": "ok",
            "cell_lines": self.cell_lines,
            "method": self.method,
            "tasks": self.models.tasks,
            "readout_genes": len(self._genes),
            "known_perturbations": len(self._known),
            "predictions_file": self.predictions is not None,
            "floor": MIN_EXCESS,
            "scale": {line: self.models.scale_name(line) for line in self.cell_lines},
            "design": self.models.describe_design(self.cell_lines),
        }


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (NaN → None, numpy scalars → Python)."""
    out = []
    for row in df.to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for k, v in row.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, float) and not np.isfinite(v):
                v = None
            clean[str(k)] = v
        out.append(clean)
    return out


__all__ = ["BadRequest", "NotFound", "Pending", "PredictionService", "Ranked", "records"]
