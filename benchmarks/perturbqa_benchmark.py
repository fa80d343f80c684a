"""Whole PerturbQA benchmark: time, peak RSS, metrics, and the vectorised-vs-loop speed ratio.

Usage:
    python benchmarks/perturbqa_benchmark.py [--shared ../shared/data] [--task de] [--out runs/bench]
                                             [--methods gene_frequency,knn_retrieval,core_voting]
                                             [--bootstrap 200]

``--methods ...,core_voting_transfer`` adds CORE-Voting with context from the other loaded cell lines'
training rows (a different protocol from per-line PerturbQA: more training data; reported as its own method).

Prints the summary table, wall time of the whole run (load, KG, evidence, all methods, metrics), peak RSS,
and the speed ratio of the vectorised evidence vote (the matrix products CORE-Voting's features use) against
a straightforward per-query Python loop computing the same similarity-weighted vote on a sample of queries.
With ``--bootstrap N`` the same benchmark runs a second time with N bootstrap resamples for the CIs, and
the script prints both wall times and their ratio (same process, same machine state).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import parser, perturbqa_config, start, write_frame
from coreperturb._pipeline import run_benchmark
from coreperturb._util import positions
from coreperturb.evidence import relational_similarity
from coreperturb.evidence._features import _at, _sim_times
from coreperturb.evidence._pool import ObservationPool
from coreperturb.report._summary import summary_table


def naive_vote(
    test: pd.DataFrame, train: pd.DataFrame, combined: np.ndarray, queries: pd.Index, pool: pd.Index
) -> np.ndarray:
    """Per-query Python loop: for each (p, g), walk the training rows of g and sum similarity-weighted labels."""
    by_gene: dict[str, list[tuple[str, int]]] = {}
    for p, g, y in zip(train["perturbation"], train["gene"], train["label"], strict=True):
        by_gene.setdefault(g, []).append((p, int(y)))
    qpos = {p: i for i, p in enumerate(queries)}
    ppos = {p: i for i, p in enumerate(pool)}
    out = np.zeros(len(test))
    for k, (p, g) in enumerate(zip(test["perturbation"], test["gene"], strict=True)):
        pos = tot = 0.0
        for q, y in by_gene.get(g, []):
            w = combined[qpos[p], ppos[q]]
            if w > 0:
                pos += w * y
                tot += w
        out[k] = pos / tot if tot else np.nan
    return out


def vectorised_vote(test: pd.DataFrame, pool: ObservationPool, sims: object) -> np.ndarray:
    """The similarity-weighted positive share of every query, as CORE-Voting's features compute it."""
    qi = positions(sims.queries, test["perturbation"].astype(str))  # type: ignore[attr-defined]
    gi = positions(pool.genes, test["gene"].astype(str))
    comb = sims.combined  # type: ignore[attr-defined]
    pos = _at(_sim_times(comb, pool.Y), qi, gi)
    tot = _at(_sim_times(comb, pool.M), qi, gi)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, pos / tot, np.nan)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--task", default="de")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--loop-sample", type=int, default=2000)
    ap.add_argument("--methods", default="gene_frequency,knn_retrieval,core_voting")
    ap.add_argument("--bootstrap", type=int, default=0, help="also time a run with N bootstrap resamples")
    args = ap.parse_args()
    start(args)
    config = perturbqa_config(args, tasks=(args.task,), methods=tuple(args.methods.split(",")))
    t0 = time.perf_counter()
    result = run_benchmark(config)
    wall = time.perf_counter() - t0
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    pd.set_option("display.width", 200)
    print(summary_table(result.metrics).round(4).to_string())
    print(f"\nwhole benchmark wall time: {wall:.1f}s  peak RSS: {rss_gb:.2f} GB")
    print("timings:", {k: round(v, 1) for k, v in result.timings.items() if "/" not in k})
    if args.bootstrap:
        from dataclasses import replace

        t0 = time.perf_counter()
        boot = run_benchmark(replace(config, bootstrap=args.bootstrap))
        wall_b = time.perf_counter() - t0
        ci = boot.metrics.query("metric == 'macro_per_gene_auroc'")[
            ["cell_line", "method", "value", "ci_low", "ci_high"]
        ]
        print(ci.round(4).to_string(index=False))
        print(
            f"with --bootstrap {args.bootstrap}: {wall_b:.1f}s wall (evaluate {boot.timings['evaluate']:.1f}s) vs "
            f"{wall:.1f}s without: ratio {wall_b / wall:.2f}"
        )
    if args.out:
        write_frame(result.metrics, args.out / "metrics.csv")
        write_frame(result.predictions, args.out / "predictions.parquet")

    # speed ratio: vectorised evidence (all test queries of the first line) vs per-query loop on a sample
    from coreperturb.data import load_perturbqa

    assert result.kg is not None
    line = config.data.cell_lines[0] if config.data.cell_lines else "k562"
    table = load_perturbqa(config.data.data_dir, [line], [args.task])  # type: ignore[arg-type]
    train, test = table.split("train"), table.split("test")
    pool = ObservationPool.from_frame(train)
    perts = sorted(test["perturbation"].unique())
    sims = relational_similarity(result.kg, perts, list(pool.perturbations), top_k=100)
    t = time.perf_counter()
    share = vectorised_vote(test, pool, sims)
    vec_s = time.perf_counter() - t
    sample = test.sample(min(args.loop_sample, len(test)), random_state=0)
    t = time.perf_counter()
    loop = naive_vote(sample, train, sims.combined, sims.queries, sims.pool)
    loop_s = time.perf_counter() - t
    vec_share = share[sample.index]
    ok = ~np.isnan(loop)
    assert np.allclose(vec_share[ok], loop[ok], atol=1e-5), "vectorised and loop votes disagree"
    per_q_vec = vec_s / len(test)
    per_q_loop = loop_s / len(sample)
    print(
        f"\nevidence vote on {line}: vectorised {len(test)} queries in {vec_s:.3f}s; "
        f"per-query loop {len(sample)} queries in {loop_s:.3f}s; speed ratio per query: {per_q_loop / per_q_vec:.0f}x "
        f"(votes agree on {ok.sum()} sampled queries)"
    )


if __name__ == "__main__":
    main()
