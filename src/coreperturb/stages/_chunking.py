"""How listed pairs are cut into chunks (a grid: :func:`coreperturb.stages._grids.grid_chunks`), and how
chunks are scored side by side, results in order.

A chunk holds whole perturbations, at most ``pairs_per_chunk`` pairs and
:data:`MAX_PERTURBATIONS_PER_CHUNK` perturbations, so that memory is bounded by both.
"""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pandas as pd

J = TypeVar("J")
R = TypeVar("R")


MAX_PERTURBATIONS_PER_CHUNK = 2_000
"""Perturbations scored at once, whatever the pairs: each brings its own retrieval and similarity rows, so a
chunk of few genes (one gene × every candidate) is bounded by perturbations, not by pairs."""


def pair_chunks(pairs: pd.DataFrame, pairs_per_chunk: int) -> Iterator[pd.DataFrame]:
    """Listed pairs grouped by perturbation (input order within one), in chunks of at most
    ``pairs_per_chunk`` pairs and :data:`MAX_PERTURBATIONS_PER_CHUNK` perturbations: each perturbation's
    retrieval is done once, and memory stays bounded however the pairs are spread."""
    pairs = pairs.sort_values("perturbation", kind="stable")
    codes = pd.factorize(pairs["perturbation"])[0]
    lo = 0
    while lo < len(pairs):
        last = int(np.searchsorted(codes, codes[lo] + MAX_PERTURBATIONS_PER_CHUNK))
        hi = max(lo + 1, min(lo + pairs_per_chunk, len(pairs), last))
        yield pairs.iloc[lo:hi]
        lo = hi


def in_order(jobs: Iterable[J], work: Callable[[J], R], ahead: int = 1) -> Iterator[R]:
    """``work(job)`` for every job, results in job order, with up to ``ahead`` jobs running at once in
    threads (``ahead <= 1``: one after the other, in the caller's thread).

    Scoring releases the GIL in its heavy parts (sparse products, sorting, the compiled kernels), so two
    chunks scored at once keep two cores busy where one chunk's Python-bound steps would leave one idle.
    Memory grows with ``ahead`` chunks in flight; a failure is raised when its result is reached.
    """
    if ahead <= 1:
        yield from map(work, jobs)
        return
    with ThreadPoolExecutor(ahead) as pool:
        running: deque[Future[R]] = deque()
        for job in jobs:
            # each job sees the caller's context (profiling stages) as it was when it was submitted
            running.append(pool.submit(contextvars.copy_context().run, work, job))
            if len(running) >= ahead:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


__all__ = ["MAX_PERTURBATIONS_PER_CHUNK", "in_order", "pair_chunks"]
