"""LINCS L1000 drug benchmark: DE and direction tasks, all non-LLM methods, metrics and wall time.

Usage:
    python benchmarks/lincs_benchmark.py [--shared ../shared/data] [--tasks de,dir] [--out runs/lincs]

Equivalent CLI: ``coreperturb benchmark --dataset lincs --data-dir ../shared/data/lincs --kg-dir
../shared/data/kg --task de,dir``.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pandas as pd

from _common import parser, start, write_frame
from coreperturb._pipeline import BenchmarkConfig, run_benchmark
from coreperturb.report._summary import summary_table


def main() -> None:
    ap = parser(__doc__, cell_lines=False)
    ap.add_argument("--tasks", default="de,dir")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    start(args, "lincs")
    config = BenchmarkConfig.from_options(
        data_dir=args.shared / "lincs",
        kg_dir=args.shared / "kg",
        dataset="lincs",
        tasks=tuple(args.tasks.split(",")),
        bootstrap=args.bootstrap,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    result = run_benchmark(config)
    wall = time.perf_counter() - t0
    pd.set_option("display.width", 200)
    print(summary_table(result.metrics).round(4).to_string())
    m = result.metrics
    ci = m[(m["method"] == "core_voting") & (m["metric"] == "macro_per_gene_auroc")]
    print("\ncore_voting macro per-gene AUROC with 95% CI (bootstrap over test drugs):")
    print(ci[["task", "value", "ci_low", "ci_high"]].round(4).to_string(index=False))
    counts = m[m["metric"].str.startswith("n_test_perturbations")].drop_duplicates(["task", "metric"])
    print("\n" + counts[["task", "metric", "value"]].to_string(index=False))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"\nwall time {wall:.1f}s  peak RSS {rss:.2f} GB")
    if args.out:
        write_frame(m, args.out / "metrics.csv")
        write_frame(result.predictions, args.out / "predictions.parquet")


if __name__ == "__main__":
    main()
