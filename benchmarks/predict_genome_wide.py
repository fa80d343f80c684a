"""Genome-wide prediction: `coreperturb predict --perturbations all --genes all` on a PerturbQA model.

Usage:
    python benchmarks/predict_genome_wide.py [--shared ../shared/data] [--cell-line k562] [--model DIR]
                                             [--limit N] [--chunk-pairs 250000] [--out FILE] [--keep]

Fits a CORE-Voting model on the cell line's training split (DE and direction) with `coreperturb fit`
unless --model is given, then runs `coreperturb predict --perturbations all --genes all` as a child process
and reports its wall time, pairs per second and peak RSS (``os.wait4`` of that process alone), and the
size of the output. --limit N predicts only the first N candidate perturbations (a quick estimate).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_child(cmd: list[str]) -> tuple[float, float, int]:
    """Run a command; return (wall seconds, peak RSS in GB, exit code) of that process alone."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    return wall, usage.ru_maxrss / 1024**2, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--cell-line", default="k562")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--chunk-pairs", type=int, default=250_000)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the output file")
    args = ap.parse_args()
    if not (args.shared / "perturbqa").is_dir():
        sys.exit(f"PerturbQA data not found under {args.shared}")
    tmp = Path(tempfile.mkdtemp(prefix="genome_wide_"))
    exe = [sys.executable, "-m", "coreperturb.cli"]
    model = args.model
    if model is None:
        model = tmp / "model"
        wall, rss, rc = run_child(
            [
                *exe,
                "fit",
                "--data-dir",
                str(args.shared / "perturbqa"),
                "--kg-dir",
                str(args.shared / "kg"),
                "--cell-lines",
                args.cell_line,
                "--task",
                "de,dir",
                "--out",
                str(model),
            ]
        )
        if rc:
            sys.exit(f"fit failed (exit {rc})")
        print(f"fit: {wall:.1f}s, peak RSS {rss:.2f} GB")
    perts = "all"
    if args.limit:
        from coreperturb.model_files import load_model
        from coreperturb.stages import candidate_perturbations

        cand = candidate_perturbations(load_model(model), args.cell_line)[: args.limit]
        (tmp / "perts.txt").write_text("\n".join(cand) + "\n")
        perts = f"@{tmp / 'perts.txt'}"
    out = args.out or tmp / "predictions.parquet"
    cmd = [
        *exe,
        "predict",
        "--model",
        str(model),
        "--cell-lines",
        args.cell_line,
        "--perturbations",
        perts,
        "--genes",
        "all",
        "--chunk-pairs",
        str(args.chunk_pairs),
        "--out",
        str(out),
    ]
    wall, rss, rc = run_child(cmd)
    if rc:
        sys.exit(f"predict failed (exit {rc})")
    import pyarrow.parquet as pq

    n = pq.ParquetFile(out).metadata.num_rows if out.suffix == ".parquet" else None
    size = out.stat().st_size / 1e9
    print(
        f"predict {args.cell_line} ({perts if args.limit else 'all'} x all genes): {n} pairs in {wall:.1f}s "
        f"= {n / wall if n else float('nan'):,.0f} pairs/s; peak RSS {rss:.2f} GB; output {size:.2f} GB ({out})"
    )
    if not args.keep and args.out is None:
        out.unlink()


if __name__ == "__main__":
    main()
