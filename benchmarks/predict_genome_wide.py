"""Genome-wide prediction: `coreperturb predict --perturbations all --genes all` on a PerturbQA model.

Usage:
    python benchmarks/predict_genome_wide.py [--shared ../shared/data] [--cell-line k562] [--model DIR]
                                             [--limit N] [--chunk-pairs 250000] [--out FILE] [--keep]
                                             [--baseline GIT_REF [--baseline-model DIR]] [--compare 0]

Fits a CORE-Voting model on the cell line's training split (DE and direction) with `coreperturb fit`
unless --model is given, then runs `coreperturb predict --perturbations all --genes all --profile` as a child
process and reports its wall time, CPU seconds (user + system, of that process alone, ``os.wait4``), CPU
seconds per million pairs, pairs per second, peak RSS and the size of the output, and the stage table
(retrieval, features, trees, tables, writing). --limit N predicts only the first N candidate perturbations.

--baseline GIT_REF runs the same command with the code of GIT_REF (a ``git worktree`` of this repository
on PYTHONPATH) first, in the same run, and prints the speed ratio and whether the two output files hold the
same rows and bit-identical scores; --baseline-model is the same fit saved in the model format the
baseline reads (default: --model).

--compare N (default 0: skip) scores the first N candidate perturbations in this process twice, chunk by
chunk: with the current implementation and with the earlier per-pair one (reference evidence features from
:mod:`coreperturb.evidence._reference`, the pool rebuilt per chunk, scikit-learn's ``predict_proba``).
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


def run_child(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, int]:
    """Run a command; return (wall seconds, CPU seconds, peak RSS in GB, exit code) of that process alone."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024**2, os.waitstatus_to_exitcode(status)


def baseline_env(ref: str, tmp: Path) -> dict[str, str]:
    """Environment that runs the code of ``ref`` (a git worktree of this repository under ``tmp``)."""
    repo = Path(__file__).resolve().parents[1]
    tree = tmp / "baseline"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), ref], check=True)
    return {**os.environ, "PYTHONPATH": str(tree / "src")}


def same_scores(a: Path, b: Path) -> str:
    """Whether two prediction files hold the same rows, column by column (a genome-wide file does not fit
    in memory as a data frame): names and flags equal, the largest score difference, NaN in the same places."""
    import pyarrow.parquet as pq

    fa, fb = pq.ParquetFile(a), pq.ParquetFile(b)
    if fa.metadata.num_rows != fb.metadata.num_rows or fa.schema_arrow.names != fb.schema_arrow.names:
        return f"different files: {fa.metadata.num_rows} vs {fb.metadata.num_rows} rows"
    diff, nan_same, names_same = 0.0, True, True
    for col in fa.schema_arrow.names:
        x, y = pq.read_table(a, columns=[col]).column(col), pq.read_table(b, columns=[col]).column(col)
        if x.type.id in (pa_float64_id(), pa_float32_id()):
            u, v = x.to_numpy(), y.to_numpy()
            nan_same &= bool(np.array_equal(np.isnan(u), np.isnan(v)))
            ok = ~np.isnan(u) & ~np.isnan(v)
            diff = max(diff, float(np.abs(u[ok] - v[ok]).max(initial=0.0)))
        else:
            names_same &= bool(x.equals(y))
        del x, y
    return (
        f"{fa.metadata.num_rows} rows; names, counts and flags equal: {names_same}; max |score difference| "
        f"{diff:.1e}; NaN in the same places: {nan_same}"
    )


def pa_float64_id() -> int:
    import pyarrow as pa

    return int(pa.float64().id)


def pa_float32_id() -> int:
    import pyarrow as pa

    return int(pa.float32().id)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--cell-line", default="k562")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--chunk-pairs", type=int, default=250_000)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the output file")
    ap.add_argument("--baseline", default=None, help="git ref of the implementation to compare with")
    ap.add_argument("--baseline-model", type=Path, default=None, help="the model the baseline reads")
    ap.add_argument(
        "--compare", type=int, default=0, help="perturbations for the per-pair reference (0: skip)"
    )
    args = ap.parse_args()
    if not (args.shared / "perturbqa").is_dir():
        sys.exit(f"PerturbQA data not found under {args.shared}")
    tmp = Path(tempfile.mkdtemp(prefix="genome_wide_"))
    exe = [sys.executable, "-m", "coreperturb.cli"]
    print(f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()}", flush=True)
    model = args.model
    if model is None:
        model = tmp / "model"
        wall, cpu, rss, rc = run_child(
            [
                *exe, "fit", "--data-dir", str(args.shared / "perturbqa"), "--kg-dir", str(args.shared / "kg"),
                "--cell-lines", args.cell_line, "--tasks", "de,dir", "--out", str(model),
            ]
        )  # fmt: skip
        if rc:
            sys.exit(f"fit failed (exit {rc})")
        print(f"fit: {wall:.1f}s, peak RSS {rss:.2f} GB")
    perts = "all"
    if args.limit:
        from coreperturb._model_files import load_model
        from coreperturb.stages import candidate_perturbations

        cand = candidate_perturbations(load_model(model), args.cell_line)[: args.limit]
        (tmp / "perts.txt").write_text("\n".join(cand) + "\n")
        perts = f"@{tmp / 'perts.txt'}"
    out = args.out or tmp / "predictions.parquet"

    def predict(
        path: Path, env: dict[str, str] | None = None, profile: bool = True, model_dir: Path | None = None
    ) -> tuple[float, float, int]:
        cmd = [
            *exe, "predict", "--model-dir", str(model_dir or model), "--cell-lines", args.cell_line, "--perturbations", perts,
            "--genes", "all", "--chunk-pairs", str(args.chunk_pairs), "--out", str(path),
            *(["--profile"] if profile else []),
        ]  # fmt: skip
        wall, cpu, rss, rc = run_child(cmd, env)
        if rc:
            sys.exit(f"predict failed (exit {rc})")
        import pyarrow.parquet as pq

        n = pq.ParquetFile(path).metadata.num_rows if path.suffix == ".parquet" else 0
        print(
            f"predict {args.cell_line} ({perts if args.limit else 'all'} x all genes, DE + direction): {n} pairs "
            f"in {wall:.1f}s = {n / wall if n else float('nan'):,.0f} pairs/s; CPU {cpu:.1f}s = "
            f"{cpu / n * 1e6 if n else float('nan'):.2f} CPU s per million pairs; peak RSS {rss:.2f} GB; "
            f"output {path.stat().st_size / 1e9:.2f} GB ({path})",
            flush=True,
        )
        return wall, cpu, n

    if args.baseline:
        print(f"baseline: the code of {args.baseline}", flush=True)
        old_out = tmp / "baseline.parquet"
        try:
            env = baseline_env(args.baseline, tmp)
            b_wall, b_cpu, _ = predict(old_out, env, profile=False, model_dir=args.baseline_model)
        finally:
            repo = Path(__file__).resolve().parents[1]
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tmp / "baseline")])
        print("current code:", flush=True)
        wall, cpu, _ = predict(out)
        print(
            f"same run: current {wall:.1f}s vs {args.baseline} {b_wall:.1f}s = {b_wall / wall:.2f}x faster "
            f"(CPU {b_cpu / cpu:.2f}x less); {same_scores(old_out, out)}"
        )
        old_out.unlink()
    else:
        predict(out)
    if not args.keep and args.out is None:
        out.unlink()
    if args.compare:
        compare(model, args.cell_line, args.compare, args.chunk_pairs)


def reference_scores(models: object, line: str, perts: list[str], genes: list[str]) -> np.ndarray:
    """The earlier per-chunk implementation: per-pair reference features, scikit-learn predict_proba."""
    import pandas as pd

    from coreperturb._util import logit
    from coreperturb.evidence import relational_similarity
    from coreperturb.evidence._pool import ObservationPool
    from coreperturb.evidence._reference import evidence_features_reference

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
        sims = relational_similarity(
            m.kg, perts, list(pool.perturbations), relations=m.relations, top_k=m._k()
        )
        feats = evidence_features_reference(q, pool, sims, m.kg, m.feature_params, counts=True)
        x = feats.drop(columns=["n_pos_evidence", "n_neg_evidence"]).to_numpy()
        raw = m.model_.predict_proba(x)[:, 1]
        out.append(m.calibrator_.predict_proba(logit(raw)[:, None])[:, 1])
    return np.concatenate(out)


def compare(model_dir: Path, line: str, n: int, chunk_pairs: int) -> None:
    """Same-run speed ratio of the current chunk scoring against the earlier per-pair implementation."""
    from coreperturb._model_files import load_model
    from coreperturb.stages import candidate_perturbations
    from coreperturb.stages._grids import score_chunk

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
