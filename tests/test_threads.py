"""The CPU allotment: affinity, cgroup quotas, --threads and $COREPERTURB_THREADS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coreperturb._threads import cpu_allotment, limit_threads, resolve_threads
from coreperturb.errors import CorePerturbError


def test_cgroup_quota_caps_the_affinity(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_allotment(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one thread
    assert cpu_allotment(tmp_path) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_allotment(v1) == affinity


def test_explicit_and_environment_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COREPERTURB_THREADS", "3")
    assert resolve_threads() == 3 and resolve_threads(5) == 5
    monkeypatch.setenv("COREPERTURB_THREADS", "many")
    with pytest.raises(CorePerturbError, match=r"\$COREPERTURB_THREADS='many' is not a positive integer"):
        resolve_threads()


def test_limits_reach_the_openmp_and_blas_pools() -> None:
    from threadpoolctl import threadpool_info

    limiter = limit_threads(1)
    try:
        pools = threadpool_info()
        assert pools and all(p["num_threads"] == 1 for p in pools)
    finally:
        limiter.restore_original_limits()


def test_busy_cpus_are_left_to_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coreperturb import _threads

    (tmp_path / "loadavg").write_text("3.10 2.00 1.50 3/120 999\n")
    assert _threads.busy_cpus(tmp_path / "loadavg") == 2
    (tmp_path / "bad").write_text("garbage\n")
    assert _threads.busy_cpus(tmp_path / "bad") == 0
    monkeypatch.setattr(_threads, "cpu_allotment", lambda: 2)
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(_threads, "busy_cpus", lambda: 5)
    monkeypatch.delenv("COREPERTURB_THREADS", raising=False)
    assert resolve_threads() == 1  # a busy machine: one thread, never zero
    monkeypatch.setattr(_threads, "busy_cpus", lambda: 0)
    assert resolve_threads() == 2


def test_adaptive_threads_follow_what_others_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between steps, the thread count is the allotment minus the CPUs other processes used (measured)."""
    from coreperturb import _threads

    clock = {"t": 0.0, "busy": 0.0, "own": 0.0}
    monkeypatch.setattr(_threads.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(_threads, "_machine_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(_threads, "_own_cpu_seconds", lambda: clock["own"])
    applied: list[int] = []
    policy = _threads.AdaptiveThreads(2, 1, min_interval=2.0, apply=applied.append)

    def run(seconds: float, own: float, others: float) -> int:
        clock["t"] += seconds
        clock["own"] += own * seconds
        clock["busy"] += (own + others) * seconds
        return policy.step()

    assert run(1.0, 1, 0) == 1 and not policy.decisions  # too short to measure: unchanged
    assert run(4.0, 1, 0) == 2 and applied == [2]  # a short-lived process at start is gone: both cores
    assert run(5.0, 1, 1) == 1 and applied == [2, 1]  # a busy job started beside: step back
    assert run(5.0, 1, 0.3) == 2  # a light process (a third of a core) keeps the second core ours
    assert [round(d[1], 2) for d in policy.decisions] == [0.0, 1.0, 0.3]


def test_adaptive_only_when_nobody_fixed_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from coreperturb import _threads

    monkeypatch.delenv("COREPERTURB_THREADS", raising=False)
    monkeypatch.setattr(_threads, "cpu_allotment", lambda: 2)
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)
    try:
        assert _threads.adapt_threads(1) == 1 and _threads.retune() is None  # --threads 1: fixed
        monkeypatch.setenv("COREPERTURB_THREADS", "2")
        assert _threads.adapt_threads() == 2 and _threads.retune() is None  # environment: fixed
        monkeypatch.delenv("COREPERTURB_THREADS")
        _threads.adapt_threads()
        assert _threads.retune() in (1, 2)  # the default: re-evaluated
    finally:
        for policy in _threads._ADAPTIVE:
            for limiter in policy._limits:
                limiter.restore_original_limits()
        _threads._ADAPTIVE.clear()
        for limiter in _threads._FIXED_LIMITS:
            limiter.restore_original_limits()
        _threads._FIXED_LIMITS.clear()
