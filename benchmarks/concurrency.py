"""Several coreperturb runs at once on a shared machine: do they degrade gracefully?

Usage:
    python benchmarks/concurrency.py [--copies 4] [--threads N] [-- extra benchmark args]

Runs the same job (default: `coreperturb benchmark` on the built-in synthetic data, written to temporary
directories) ``--copies`` times one after another, then ``--copies`` times at once, and prints the total
wall time of each way and their ratio, plus the CPU time the children used. With CPU-bound jobs on a
machine they share, running them at once should take about as long as running them in turn (ratio ~1): each
run keeps its thread pools within the CPU allotment (``--threads`` / ``$COREPERTURB_THREADS`` override it)
and OpenMP threads do not spin while they wait.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("extra", nargs="*", help="extra `coreperturb benchmark` arguments (after --)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="concurrency_"))
    env = dict(os.environ)
    if args.threads:
        env["COREPERTURB_THREADS"] = str(args.threads)

    def cmd(i: int, tag: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "coreperturb.cli",
            "benchmark",
            "--out",
            str(tmp / f"{tag}{i}"),
            *args.extra,
        ]

    c0, t0 = _cpu(), time.perf_counter()
    for i in range(args.copies):
        subprocess.run(
            cmd(i, "seq"), check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    seq_wall, seq_cpu = time.perf_counter() - t0, _cpu() - c0
    c0, t0 = _cpu(), time.perf_counter()
    procs = [
        subprocess.Popen(cmd(i, "par"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(args.copies)
    ]
    rcs = [p.wait() for p in procs]
    par_wall, par_cpu = time.perf_counter() - t0, _cpu() - c0
    if any(rcs):
        sys.exit(f"a concurrent run failed: exit codes {rcs}")
    print(
        f"{args.copies} copies one after another: {seq_wall:.1f}s wall, {seq_cpu:.1f}s CPU; "
        f"at once: {par_wall:.1f}s wall, {par_cpu:.1f}s CPU; wall ratio (at once / in turn) "
        f"{par_wall / seq_wall:.2f}, CPU ratio {par_cpu / seq_cpu:.2f} "
        f"({os.cpu_count()} CPUs, threads per run: {args.threads or 'allotment'})"
    )


if __name__ == "__main__":
    main()
