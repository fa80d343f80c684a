"""Where the time of a prediction goes: seconds per stage (retrieval, features, trees, tables, writing).

Stages are timed only inside :func:`profiling` (a context variable: concurrent work elsewhere, e.g. the
explorer's threads, is not counted and pays one ``perf_counter`` call per stage). Work handed to other
threads is counted when it runs in a copy of the caller's context (``contextvars.copy_context().run``), so
a stage's seconds are summed over the threads that ran it and can add up to more than the wall time.
``coreperturb predict --profile`` prints the table; ``benchmarks/predict_genome_wide.py`` too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

STAGES: tuple[str, ...] = ("retrieval", "features", "trees", "tables", "writer wait", "writing")
"""Stages in pipeline order: ``retrieval`` (KG similarities of the query perturbations to the pool),
``features`` (evidence features), ``trees`` (the combiner and calibration), ``tables`` (priors, effects,
flags and rankings of the output rows), ``writer wait`` (the computation waiting for the output file) and
``writing`` (encoding and writing the output file, in a thread of its own)."""

_ACTIVE: ContextVar[Profile | None] = ContextVar("coreperturb_profile", default=None)


@dataclass
class Profile:
    """Seconds per stage (summed over threads) of one profiled run, and the run's wall and CPU seconds."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall: float = 0.0
    cpu: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to stage ``name`` (thread-safe)."""
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def table(self) -> list[tuple[str, float, float]]:
        """``(stage, seconds, share of all stage seconds)`` rows."""
        total = sum(self.seconds.values())
        return [(s, v, v / total if total else 0.0) for s, v in self.seconds.items()]

    def render(self, pairs: int | None = None) -> str:
        """The table as text (with CPU seconds per million pairs when ``pairs`` is given)."""
        lines = [f"{'stage':<12} {'seconds':>8} {'share':>6}"]
        lines += [f"{s:<12} {v:>8.2f} {f:>6.1%}" for s, v, f in self.table()]
        lines.append(
            f"(seconds summed over the threads that ran each stage) wall {self.wall:.2f} s, "
            f"CPU {self.cpu:.1f} s"
        )
        if pairs:
            lines.append(f"CPU seconds per million pairs: {self.cpu / pairs * 1e6:.2f}")
        return "\n".join(lines)


@contextmanager
def profiling() -> Iterator[Profile]:
    """Time the stages of the work inside the block; the :class:`Profile` fills in as it runs."""
    prof = Profile()
    token = _ACTIVE.set(prof)
    t0, c0 = time.perf_counter(), _cpu()
    try:
        yield prof
    finally:
        prof.wall = time.perf_counter() - t0
        prof.cpu = _cpu() - c0
        _ACTIVE.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the block's wall time to stage ``name`` of the active profile (nothing when none is active).

    Stages nest within a thread: time spent in an inner stage counts for the inner one only."""
    prof = _ACTIVE.get()
    if prof is None:
        yield
        return
    stack: list[list[float]] = prof._local.__dict__.setdefault("open", [])
    frame = [time.perf_counter(), 0.0]  # start, seconds of inner stages
    stack.append(frame)
    try:
        yield
    finally:
        stack.pop()
        elapsed = time.perf_counter() - frame[0]
        prof.add(name, elapsed - frame[1])
        if stack:
            stack[-1][1] += elapsed


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


__all__ = ["STAGES", "Profile", "profiling", "stage"]
