"""Does the README's Python fit share the cores like the CLI's? Two of each side by side, wall seconds.

    python benchmarks/python_fit.py [--shared ../shared] [--cell-lines k562]

Runs, on a quiet machine, (a) two copies of the README's Python example (``load_perturbqa`` → ``build_kg`` →
``fit(..., FitConfig(methods=("gene_frequency", "core_voting")))``) started together, then (b) two
``coreperturb fit`` of the same model started together, and prints each pair's wall time and the ratio
(a) / (b). The library's ``fit`` adopts the CLI's thread policy when its caller set none
(``coreperturb._threads.ensure_threads``); before it, OpenMP ran on every core in each copy.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import parser, start

PYTHON = """
import warnings
warnings.simplefilter("ignore")
from coreperturb import build_kg, load_perturbqa, fit
from coreperturb.stages import FitConfig
table = load_perturbqa({data!r}, {lines!r}, ["de", "dir"])
fit(table, build_kg({kg!r}), FitConfig(methods=("gene_frequency", "core_voting")))
"""


def pair(commands: list[list[str]]) -> float:
    """Wall seconds of two commands started together."""
    t = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in commands]
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"a run failed: exit codes {codes}: {commands[0]}")
    return time.perf_counter() - t


def main() -> None:
    ap = parser(__doc__)
    args = ap.parse_args()
    start(args)
    data, kg = str(args.shared / "perturbqa"), str(args.shared / "kg")
    code = PYTHON.format(data=data, lines=list(args.cell_lines), kg=kg)
    py = pair([[sys.executable, "-c", code]] * 2)
    print(f"two README Python fits side by side: {py:.1f}s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cli = [
            [
                sys.executable, "-m", "coreperturb.cli", "fit", "--data-dir", data, "--kg-dir", kg,
                "--cell-lines", ",".join(args.cell_lines), "--tasks", "de,dir",
                "--methods", "gene_frequency,core_voting", "--out", str(Path(tmp) / f"m{i}"),
            ]
            for i in range(2)
        ]  # fmt: skip
        c = pair(cli)
    print(f"two CLI fits side by side: {c:.1f}s")
    print(f"ratio Python / CLI: {py / c:.2f}")


if __name__ == "__main__":
    main()
