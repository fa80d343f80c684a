"""How many threads coreperturb may use, and keeping the BLAS / OpenMP pools inside that allotment.

The default is the CPU allotment of this process: the CPUs it may run on (affinity, e.g. ``taskset`` or a
SLURM cgroup cpuset) capped by a cgroup CPU quota (containers, ``--cpus``). When the process may use every
CPU of the machine (no cpuset, no quota), the CPUs that other processes occupy are left to them (at least
one thread is kept): at start from the runnable tasks in ``/proc/loadavg``, and then, during long work, by
measurement (:class:`AdaptiveThreads`): between two steps (prediction chunks, fitted models), the CPU time
the whole machine spent busy (``/proc/stat``) minus this process's own CPU time gives the CPUs others used,
and the thread count is set again. A short-lived process at start no longer makes a 20-minute run
single-threaded, and a job that starts beside a long run makes it step back. ``--threads N`` or
``$COREPERTURB_THREADS`` override all of this (no re-evaluation). The thread pools of OpenMP (scikit-learn's
gradient boosting) and BLAS (NumPy / SciPy) are limited with threadpoolctl, so several concurrent runs on a
shared node do not each start a thread per core and oversubscribe it (busy-waiting OpenMP threads on an
oversubscribed core can double the CPU time); the compiled tree kernels and the writer use Python threads
that sleep while they wait.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from coreperturb.errors import CorePerturbError

ENV = "COREPERTURB_THREADS"
_OMP_FROM_USER = bool(os.environ.get("OMP_NUM_THREADS", "").strip())

log = logging.getLogger(__name__)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs granted by a cgroup quota (v2 ``cpu.max`` or v1 ``cfs_quota_us / cfs_period_us``), if any."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        q, p = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if q.is_file() and p.is_file():
            quota_us = int(q.read_text())
            return None if quota_us <= 0 else quota_us / int(p.read_text())
    except (OSError, ValueError):
        return None
    return None


def cpu_allotment(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: affinity, capped by a cgroup quota (rounded up), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def busy_cpus(loadavg: Path = Path("/proc/loadavg")) -> int:
    """Runnable tasks on the machine right now other than this one (``/proc/loadavg``; 0 if unknown)."""
    try:
        running = int(loadavg.read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, running - 1)


def default_threads() -> int:
    """The allotment; on an unconfined process, minus the CPUs other runnable processes use now."""
    n = cpu_allotment()
    if n >= (os.cpu_count() or n):
        n = max(1, n - busy_cpus())
    return n


def resolve_threads(threads: int | None = None) -> int:
    """``threads`` if given, else ``$COREPERTURB_THREADS``, else :func:`default_threads`.

    Raises:
        CorePerturbError: A value that is not a positive integer.
    """
    if threads is None:
        raw = os.environ.get(ENV, "").strip()
        if not raw:
            return default_threads()
        try:
            threads = int(raw)
        except ValueError:
            raise CorePerturbError(f"${ENV}={raw!r} is not a positive integer") from None
    if threads < 1:
        raise CorePerturbError(f"threads (${ENV}) must be a positive integer, got {threads}")
    return threads


_LIMIT: list[int] = []
"""The count of the last :func:`limit_threads` (empty before any)."""


def effective_threads() -> int:
    """Threads compute may use now: the OpenMP limit in force (``--threads`` / the policy set it with
    :func:`limit_threads`; scikit-learn's reading of it, which also honours cgroup quotas, once scikit-learn
    is loaded; before, the last limit set, else ``$OMP_NUM_THREADS``, else the CPU allotment: predicting
    from a saved model does not import scikit-learn for this)."""
    if "sklearn" in sys.modules:
        try:
            from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

            return max(1, int(_openmp_effective_n_threads()))
        except (ImportError, AttributeError):  # pragma: no cover - other scikit-learn internals
            pass
    if _LIMIT:
        return _LIMIT[-1]
    raw = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else cpu_allotment()


def _machine_busy_seconds(stat: Path = Path("/proc/stat")) -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``; ``None`` if unknown)."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
        if fields[0] != "cpu":
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    except (OSError, ValueError, IndexError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class AdaptiveThreads:
    """Sets this process's thread count again from what other processes used since the last step.

    ``others = (machine busy CPU seconds − this process's CPU seconds) / wall seconds`` over the interval;
    the new count is the allotment minus ``round(others)``, at least 1. Steps closer than
    ``min_interval`` seconds to the last decision are skipped (too short to measure).

    Args:
        allotment: The most threads to use (:func:`cpu_allotment`).
        threads: The count in force now.
        min_interval: Shortest interval measured, in seconds.
        apply: Called with a new count (default: :func:`limit_threads`).
    """

    def __init__(
        self,
        allotment: int,
        threads: int,
        min_interval: float = 2.0,
        apply: Any = None,
    ) -> None:
        self.allotment = allotment
        self.threads = threads
        self.min_interval = min_interval
        self._apply = apply if apply is not None else limit_threads
        self._limits: list[Any] = []
        self.decisions: list[tuple[float, float, int]] = []
        """``(monotonic time, CPUs others used, threads chosen)`` of every re-evaluation."""
        self._mark = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float | None, float]:
        return time.monotonic(), _machine_busy_seconds(), _own_cpu_seconds()

    def others(self) -> float | None:
        """CPUs other processes used since the last decision (``None`` if not measurable yet)."""
        t1, busy1, own1 = self._sample()
        t0, busy0, own0 = self._mark
        if busy0 is None or busy1 is None or t1 - t0 < self.min_interval:
            return None
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))

    def step(self) -> int:
        """Re-evaluate (when the last decision is old enough); returns the thread count in force."""
        others = self.others()
        if others is None:
            return self.threads
        n = max(1, min(self.allotment, self.allotment - round(others)))
        self.decisions.append((time.monotonic(), others, n))
        self._mark = self._sample()
        if n != self.threads:
            log.info("threads: %d -> %d (other processes used %.1f CPUs)", self.threads, n, others)
            self.threads = n
            limiter = self._apply(n)
            if limiter is not None:
                self._limits.append(limiter)
        return self.threads


_ADAPTIVE: list[AdaptiveThreads] = []
_FIXED_LIMITS: list[Any] = []


def adapt_threads(threads: int | None = None) -> int:
    """Resolve the thread count (:func:`resolve_threads`), limit the pools to it, and, when nobody fixed
    the count and the process may use the whole machine, re-evaluate it at every :func:`retune`.

    Returns:
        The thread count in force now.
    """
    n = resolve_threads(threads)
    limiter = limit_threads(n)
    _ADAPTIVE.clear()
    fixed = threads is not None or os.environ.get(ENV, "").strip() != ""
    allot = cpu_allotment()
    if not fixed and allot > 1 and allot >= (os.cpu_count() or allot):
        _ADAPTIVE.append(AdaptiveThreads(allot, n))
        _ADAPTIVE[0]._limits.append(limiter)
    else:
        _FIXED_LIMITS.append(limiter)
    return n


def ensure_threads() -> int | None:
    """Adopt the thread policy of :func:`adapt_threads` where this process has set none (the Python API
    called without the command line): a library ``fit`` then shares the cores as the CLI's does. Returns the
    thread count it set, or ``None`` when a policy was already in force (the caller's is kept)."""
    if _ADAPTIVE or _FIXED_LIMITS:
        return None
    return adapt_threads()


def retune() -> int | None:
    """Between steps of long work: re-evaluate the thread count when :func:`adapt_threads` set an adaptive
    policy (returns the count in force), else nothing (``None``)."""
    return _ADAPTIVE[0].step() if _ADAPTIVE else None


def limit_threads(threads: int) -> Any:
    """Limit the OpenMP and BLAS thread pools of this process to ``threads`` (threadpoolctl).

    Returns:
        The threadpoolctl limiter; it stays in force until its ``restore_original_limits()``.
    """
    from threadpoolctl import threadpool_limits

    _LIMIT[:] = [threads]
    if "sklearn" not in sys.modules and not _OMP_FROM_USER:
        # threadpoolctl limits the OpenMP runtimes loaded now; scikit-learn's loads with it (when a model is
        # fitted) and reads this variable then
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return threadpool_limits(limits=threads)


class SingleThreadedBlas:
    """Keeps the BLAS pool at one thread while several Python threads each call it (chunks scored side by
    side): OpenBLAS threads spin for a while after every call, so two callers with a pool of two each keep
    four threads on the cores (measured: 25% more CPU for one gene x every candidate). :meth:`again`
    re-applies the limit after :func:`retune` has set the pools; leaving restores what was there before.
    """

    def __enter__(self) -> SingleThreadedBlas:
        self._limits: list[Any] = []
        self.again()
        return self

    def again(self) -> None:
        """Limit BLAS to one thread (again)."""
        from threadpoolctl import threadpool_limits

        self._limits.append(threadpool_limits(limits=1, user_api="blas"))

    def __exit__(self, *exc: object) -> None:
        for limiter in reversed(self._limits):
            limiter.restore_original_limits()


__all__ = [
    "ENV",
    "SingleThreadedBlas",
    "busy_cpus",
    "cpu_allotment",
    "default_threads",
    "effective_threads",
    "ensure_threads",
    "limit_threads",
    "resolve_threads",
]
