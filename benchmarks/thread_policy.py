"""Which thread policy is fastest, quiet and beside busy processes? (issue: fast by default)

    python benchmarks/thread_policy.py [--busy 0,1,3,t5] [--cell-lines k562,rpe1,hepg2,jurkat]
                                       [--policies default,threads1,threads2]

Runs the same ``coreperturb benchmark`` (DE, core_voting, real PerturbQA data in ../shared) under each
policy, quiet and beside N CPU-bound busy loops started just before it (they stop with it; ``tS`` = one
busy loop during the first S seconds only, the short-lived process at start that used to make a whole run
single-threaded), and prints wall and CPU seconds per (policy, condition) and each policy's time relative to
the better of ``--threads 1`` and ``--threads 2`` in the same condition. Policies:

* ``default``: what a plain run does (no flag, no environment: the allotment minus the CPUs other runnable
  processes use at start, then re-evaluated between steps from the CPU time others used; see
  ``coreperturb._threads.AdaptiveThreads``);
* ``threads1`` / ``threads2``: ``--threads 1`` / ``--threads 2``;
* ``passive2``: ``--threads 2`` with OpenMP threads sleeping while they wait (``OMP_WAIT_POLICY=passive``);
* ``active2``: ``--threads 2`` with OpenMP threads spinning while they wait (``OMP_WAIT_POLICY=active``).
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
POLICIES: dict[str, tuple[list[str], dict[str, str]]] = {
    "default": ([], {}),
    "threads1": (["--threads", "1"], {}),
    "threads2": (["--threads", "2"], {}),
    "passive2": (["--threads", "2"], {"OMP_WAIT_POLICY": "passive"}),
    "active2": (["--threads", "2"], {"OMP_WAIT_POLICY": "active"}),
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(policy: str, busy: str, lines: str, out: Path) -> tuple[float, float]:
    flags, env = POLICIES[policy]
    transient = busy.startswith("t")
    n = 1 if transient else int(busy)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.5 if n else 0)
    base = {k: v for k, v in os.environ.items() if k not in ("COREPERTURB_THREADS", "OMP_WAIT_POLICY")}
    cmd = [
        "coreperturb", "benchmark", "--data-dir", str(SHARED / "perturbqa"), "--kg-dir", str(SHARED / "kg"),
        "--cell-lines", lines, "--tasks", "de", "--methods", "core_voting", "--out", str(out), *flags,
    ]  # fmt: skip
    try:
        c0, t0 = _cpu(), time.perf_counter()
        proc = subprocess.Popen(cmd, env={**base, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if transient:
            time.sleep(float(busy[1:]))
            for b in burners:
                b.kill()
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"{policy} busy={busy}: exit {proc.returncode}\n{err.decode()[-2000:]}")
        return time.perf_counter() - t0, _cpu() - c0
    finally:
        for b in burners:
            b.kill()
            b.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", default="0,1,3,t5")
    ap.add_argument("--cell-lines", default="k562,rpe1,hepg2,jurkat")
    ap.add_argument("--policies", default=",".join(POLICIES))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="threads_"))
    res: dict[tuple[str, str], tuple[float, float]] = {}
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()}", flush=True)
    for busy in args.busy.split(","):
        for policy in args.policies.split(","):
            wall, cpu = run(policy, busy, args.cell_lines, tmp / f"{policy}_{busy}")
            res[(policy, busy)] = (wall, cpu)
            print(f"busy={busy:>3s} {policy:9s} wall {wall:7.1f}s  cpu {cpu:7.1f}s", flush=True)
    print("\npolicy      busy   wall     cpu   / best of threads1,threads2 (same busy)")
    for (policy, busy), (wall, cpu) in res.items():
        best = min(
            res.get(("threads1", busy), (float("inf"), 0))[0],
            res.get(("threads2", busy), (float("inf"), 0))[0],
        )
        print(f"{policy:10s} {busy:>4s} {wall:7.1f}s {cpu:7.1f}s   {wall / best:5.2f}")


if __name__ == "__main__":
    main()
