"""How many threads coreperturb may use, and keeping the BLAS / OpenMP pools inside that allotment.

The default is the CPU allotment of this process: the CPUs it may run on (affinity, e.g. ``taskset`` or a
SLURM cgroup cpuset) capped by a cgroup CPU quota (containers, ``--cpus``). When the process may use every
CPU of the machine (no cpuset, no quota), the CPUs that other runnable processes occupy right now are left to
them (at least one thread is kept). ``--threads N`` or ``$COREPERTURB_THREADS`` override all of this. The
thread pools of OpenMP (scikit-learn's gradient boosting) and BLAS (NumPy / SciPy) are limited with
threadpoolctl, so several concurrent runs on a shared node do not each start a thread per core and
oversubscribe it (busy-waiting OpenMP threads on an oversubscribed core can double the CPU time).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from coreperturb.errors import CorePerturbError

ENV = "COREPERTURB_THREADS"


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


def limit_threads(threads: int) -> Any:
    """Limit the OpenMP and BLAS thread pools of this process to ``threads`` (threadpoolctl).

    Returns:
        The threadpoolctl limiter; it stays in force until its ``restore_original_limits()``.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


__all__ = ["ENV", "busy_cpus", "cpu_allotment", "default_threads", "limit_threads", "resolve_threads"]
