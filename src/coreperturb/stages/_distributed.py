"""Scale-out of genome-wide prediction over Ray Data (``pip install 'coreperturb[ray]'``).

``coreperturb predict --executor ray`` cuts the perturbations × genes grid into the same chunks as the local
executor, broadcasts the fitted models once (``ray.put``), scores the chunks on Ray workers with
:func:`coreperturb.stages.score_chunk`, and streams the results back to the driver in chunk order, where
the same writer writes them: the output is identical to a local run.

Multi-node: ``ray start --head`` on one node, ``ray start --address HEAD:6379`` on the others, then
``coreperturb predict ... --executor ray --ray-address HEAD:6379 --ray-workers 32``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd

from coreperturb._defaults import PAIRS_PER_CHUNK
from coreperturb._deprecation import keyword_options
from coreperturb.errors import CorePerturbError
from coreperturb.stages._fitted import FittedModels
from coreperturb.stages._grids import GridPlan, grid_chunks, score_chunk
from coreperturb.stages._ranking import Ranking, check_ranking, merge_top


class _ChunkScorer:
    """Ray Data callable class: one copy of the models per worker (from the object store)."""

    def __init__(
        self, models_ref: list[Any], plan: GridPlan, methods: list[str], top: Ranking | None
    ) -> None:
        import ray

        from coreperturb._threads import limit_threads

        self._limits = limit_threads(1)  # parallelism comes from the workers
        # a private, writable copy: arrays from the object store are read-only, and scikit-learn's tree
        # predictors need writable buffers
        self.models: FittedModels = copy.deepcopy(ray.get(models_ref[0]))
        self.plan = plan
        self.methods = methods
        self.top = top

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for k, unit, lo, hi in zip(batch["k"], batch["unit"], batch["lo"], batch["hi"], strict=True):
            line, perts, genes = self.plan.units[int(unit)]
            for frame in score_chunk(
                self.models, line, perts[int(lo) : int(hi)], genes, self.methods, top=self.top
            ):
                parts.append(frame.assign(_chunk=int(k)))
        return pd.concat(parts, ignore_index=True)


@keyword_options
def ray_predict_grid(
    models: FittedModels,
    plan: GridPlan,
    methods: Sequence[str] | None = None,
    *,
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
    top: int | Ranking | None = None,
    progress: Callable[[int, int], None] | None = None,
    address: str | None = None,
    workers: int = 2,
) -> Iterator[pd.DataFrame]:
    """Like :func:`coreperturb.stages.predict_grid`, with the chunks scored on Ray workers.

    Yields:
        The same frames, in the same order, as the local executor.
    """
    ranking = Ranking(top) if isinstance(top, int) else top
    methods = list(methods) if methods is not None else [models.default_method]
    check_ranking(models, ranking, methods)
    frames = _ray_frames(
        models,
        plan,
        methods,
        pairs_per_chunk=pairs_per_chunk,
        top=ranking,
        progress=progress,
        address=address,
        workers=workers,
    )
    yield from merge_top(frames, ranking) if ranking is not None and ranking.per == "gene" else frames


def _ray_frames(
    models: FittedModels,
    plan: GridPlan,
    methods: list[str],
    *,
    pairs_per_chunk: int,
    top: Ranking | None,
    progress: Callable[[int, int], None] | None,
    address: str | None,
    workers: int,
) -> Iterator[pd.DataFrame]:
    try:
        import ray
        import ray.data
    except ImportError:
        raise CorePerturbError("the ray executor needs Ray: pip install 'coreperturb[ray]'") from None
    chunks = list(grid_chunks(plan, pairs_per_chunk))
    if not chunks:
        return
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    models_ref = ray.put(models)  # broadcast once; workers read it from the object store
    items = [{"k": k, "unit": u, "lo": lo, "hi": hi} for k, (u, lo, hi) in enumerate(chunks)]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _ChunkScorer,
        fn_constructor_kwargs={"models_ref": [models_ref], "plan": plan, "methods": methods, "top": top},
        batch_size=1,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    total = plan.n_perturbations
    done = 0
    expected = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=1):
        frame_all: pd.DataFrame = pd.DataFrame(batch)
        for key, frame in frame_all.groupby("_chunk", sort=True):
            k = int(str(key))
            if k != expected:
                raise CorePerturbError(f"ray executor returned chunk {k} before chunk {expected}")
            expected += 1
            out = frame.drop(columns="_chunk").reset_index(drop=True)
            for _, part in out.groupby("method", sort=False):
                yield part.reset_index(drop=True)
            _, lo, hi = chunks[k]
            done += hi - lo
            if progress is not None:
                progress(done, total)
    if expected != len(chunks):
        raise CorePerturbError(f"ray executor returned {expected} of {len(chunks)} chunks")


__all__ = ["ray_predict_grid"]
