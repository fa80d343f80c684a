"""Chunks scored side by side: the same rows, in the same order, as one chunk after the other."""

from __future__ import annotations

import threading
import warnings

import pandas as pd
import pytest

from coreperturb._config import FitConfig
from coreperturb._threads import limit_threads
from coreperturb.data import QueryTable
from coreperturb.graph import KnowledgeGraph
from coreperturb.stages import FittedModels, Ranking, fit, grid_plan, predict_grid
from coreperturb.stages._chunking import in_order


def test_in_order_keeps_job_order_and_raises_a_failure_where_it_is_reached() -> None:
    seen: set[str] = set()

    def work(i: int) -> int:
        seen.add(threading.current_thread().name)
        return i * i

    assert list(in_order(range(7), work, ahead=1)) == [i * i for i in range(7)]
    assert seen == {threading.current_thread().name}  # one after the other, in the caller's thread
    assert list(in_order(range(7), work, ahead=2)) == [i * i for i in range(7)]

    def failing(i: int) -> int:
        if i == 3:
            raise ValueError("job 3")
        return i

    got = []
    with pytest.raises(ValueError, match="job 3"):
        for r in in_order(range(6), failing, ahead=2):
            got.append(r)
    assert got == [0, 1, 2]


@pytest.fixture(scope="module")
def models(synth_table: QueryTable, synth_kg: KnowledgeGraph) -> FittedModels:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(synth_table.frame, synth_kg, FitConfig(methods=("core_voting",)))


def test_chunks_side_by_side_give_the_rows_of_one_at_a_time(models: FittedModels) -> None:
    """One gene x every candidate in many small chunks: two threads (two chunks at once, each scoring its
    DE and direction models in turn) and one thread give identical frames."""
    line = models.cell_lines[0]
    gene = str(models.readout_genes(line)[3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = grid_plan(models, None, genes=[gene], cell_lines=[line])

    def run(threads: int) -> pd.DataFrame:
        limiter = limit_threads(threads)
        try:
            frames = predict_grid(models, plan, pairs_per_chunk=7, top=Ranking(10, "down", "gene", None))
            return pd.concat(list(frames), ignore_index=True)
        finally:
            limiter.restore_original_limits()

    one, two = run(1), run(2)
    assert plan.n_perturbations > 3 * 7  # several chunks
    assert len(one) == 10
    pd.testing.assert_frame_equal(one, two)
