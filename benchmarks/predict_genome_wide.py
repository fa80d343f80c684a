"""Genome-wide prediction: `coreperturb predict --perturbations all --genes all` on a PerturbQA model.

Usage:
    python benchmarks/predict_genome_wide.py [--shared ../shared/data] [--cell-line k562] [--model DIR]
                                             [--limit N] [--chunk-pairs 250000] [--out FILE] [--keep]
                                             [--compare 120]

Fits a CORE-Voting model on the cell line's training split (DE and direction) with `coreperturb fit`
unless --model is given, then runs `coreperturb predict --perturbations all --genes all` as a child process
and reports its wall time, pairs per second and peak RSS (``os.wait4`` of that process alone), and the
size of the output. --limit N predicts only the first N candidate perturbations (a quick estimate).
--compare N then scores the first N candidate perturbations (x all genes, DE and direction) in this process
twice, chunk by chunk: with the current implementation and with the earlier per-pair one (reference evidence
features from :mod:`coreperturb.evidence.reference`, the pool rebuilt per chunk, scikit-learn's
``predict_proba``), and prints the speed ratio and the largest difference between their scores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


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
    ap.add_argument(
        "--compare", type=int, default=120, help="perturbations for the same-run speed ratio (0: skip)"
    )
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
                "--tasks",
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
        "--model-dir",
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
    if args.compare:
        compare(model, args.cell_line, args.compare, args.chunk_pairs)


def reference_scores(models: object, line: str, perts: list[str], genes: list[str]) -> np.ndarray:
    """The earlier per-chunk implementation: per-pair reference features, scikit-learn predict_proba."""
    import pandas as pd

    from coreperturb._util import logit
    from coreperturb.evidence import ObservationPool, relational_similarity
    from coreperturb.evidence.reference import evidence_features_reference

    q = pd.DataFrame(
        {
            "perturbation": np.repeat(np.asarray(perts, dtype=object), len(genes)),
            "gene": np.tile(genes, len(perts)),
        }
    )
    out = []
    for task in ("de", "dir"):
        m = models.models[(line, task, "core_voting")]  # type: ignore[attr-defined]
        pool = ObservationPool.from_frame(m.train_, m.genes_)
        sims = relational_similarity(m.kg, perts, list(pool.perturbations), m.relations, m._k())
        feats = evidence_features_reference(q, pool, sims, m.kg, m.feature_params, counts=True)
        x = feats.drop(columns=["n_pos_evidence", "n_neg_evidence"]).to_numpy()
        raw = m.model_.predict_proba(x)[:, 1]
        out.append(m.calibrator_.predict_proba(logit(raw)[:, None])[:, 1])
    return np.concatenate(out)


def compare(model_dir: Path, line: str, n: int, chunk_pairs: int) -> None:
    """Same-run speed ratio of the current chunk scoring against the earlier per-pair implementation."""
    from coreperturb.model_files import load_model
    from coreperturb.stages import candidate_perturbations, score_chunk

    models = load_model(model_dir)
    perts = candidate_perturbations(models, line)[:n]
    genes = list(models.readout_genes(line))
    step = max(1, chunk_pairs // len(genes))
    t = time.perf_counter()
    new = []
    for lo in range(0, len(perts), step):
        for f in score_chunk(models, line, perts[lo : lo + step], genes, ["core_voting"]):
            new.append(np.concatenate([f["p_de"].to_numpy(), f["p_up"].to_numpy()]))
    t_new = time.perf_counter() - t
    t = time.perf_counter()
    ref = [reference_scores(models, line, perts[lo : lo + step], genes) for lo in range(0, len(perts), step)]
    t_ref = time.perf_counter() - t
    diff = np.abs(np.concatenate(new) - np.concatenate(ref))
    pairs = len(perts) * len(genes)
    print(
        f"same run, {len(perts)} perturbations x {len(genes)} genes (DE + direction): current {t_new:.1f}s "
        f"({pairs / t_new:,.0f} pairs/s), earlier per-pair implementation {t_ref:.1f}s ({pairs / t_ref:,.0f} "
        f"pairs/s): {t_ref / t_new:.2f}x; max |score difference| {diff.max():.2e} (share > 1e-9: "
        f"{(diff > 1e-9).mean():.2e})"
    )


if __name__ == "__main__":
    main()
