"""LINCS L1000 drug benchmark: DE and direction tasks, all non-LLM methods, metrics and wall time.

Usage:
    python benchmarks/lincs_benchmark.py [--shared ../shared/data] [--tasks de,dir] [--out runs/lincs]

Equivalent CLI: ``coreperturb benchmark --dataset lincs --data-dir ../shared/data/lincs --kg-dir
../shared/data/kg --task de,dir``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pandas as pd

from coreperturb._pipeline import BenchmarkConfig, run_benchmark
from coreperturb.report._summary import summary_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--tasks", default="de,dir")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not (args.shared / "lincs").is_dir():
        sys.exit(f"LINCS data not found under {args.shared}")
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
        args.out.mkdir(parents=True, exist_ok=True)
        m.to_csv(args.out / "metrics.csv", index=False)
        result.predictions.to_parquet(args.out / "predictions.parquet", index=False)


if __name__ == "__main__":
    main()
