"""Whose turn it is to score: one scoring at a time, the shortest kind of answer first.

The fitted models keep lazily built caches (prepared pools, binned trees) that are not safe to build from two
threads at once, so the service scores one request at a time. Under load a plain lock serves waiters in no
particular order, and an answer that needs two turns (an explanation: its evidence, then its direction)
queues twice. :class:`Turns` hands the turn out by kind, then by arrival: an explanation (one pair) before a
ranking (one perturbation × every readout gene) before a chunk of a background gene ranking, so that the
page a person reads after a click does not wait behind every ranking asked before it.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
from collections.abc import Iterator
from enum import IntEnum


class Kind(IntEnum):
    """What a turn scores, in the order turns are given out."""

    PAIR = 0
    """One (perturbation, gene) pair: an explanation."""
    RANKING = 1
    """One perturbation × every readout gene: a perturbation's page."""
    BACKGROUND = 2
    """A chunk of a gene ranking computed in the background (nobody waits for the chunk itself)."""


class Turns:
    """One holder at a time; waiters are served by :class:`Kind`, then first come, first served."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._queue: list[tuple[int, int]] = []
        self._seq = itertools.count()

    @contextlib.contextmanager
    def hold(self, kind: Kind) -> Iterator[None]:
        """Wait for the turn (behind every waiter of an earlier kind, and those of the same kind that came
        first), score, hand it on."""
        with self._cond:
            ticket = (int(kind), next(self._seq))
            heapq.heappush(self._queue, ticket)
            self._cond.wait_for(lambda: not self._busy and self._queue[0] == ticket)
            heapq.heappop(self._queue)
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def waiting(self) -> int:
        """Requests waiting for the turn."""
        with self._cond:
            return len(self._queue)


__all__ = ["Kind", "Turns"]
