"""cell-eval's DE metrics for core_voting (ranked by p_de and by effect) and gene_frequency on PerturbQA.

Usage:
    pip install 'coreperturb[celleval]'
    python benchmarks/cell_eval_benchmark.py [--shared ../shared/data] [--cell-lines k562,rpe1,hepg2,jurkat]
                                             [--out runs/cell_eval]

Fits gene_frequency and core_voting on the train split of each line (DE and direction, exactly as
``coreperturb benchmark --task de,dir`` does), predicts the test split, writes the pdex-style DE tables
(``coreperturb.evaluation._celleval.de_tables``) and scores them with cell-eval's own DE metrics
(``overlap_at_K``, ``precision_at_K``, ``de_direction_match``, ``pr_auc``, ``roc_auc``). Prints one table per
metric set and writes ``OUT/cell_eval_metrics.csv`` (cell_line, method, ranking, metric, value).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from _common import parser, perturbqa_config, start, write_frame
from coreperturb._pipeline import run_benchmark
from coreperturb.evaluation._celleval import cell_eval_scores, de_tables


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--out", type=Path, default=Path("runs/cell_eval"))
    args = ap.parse_args()
    start(args)
    config = perturbqa_config(args, tasks=("de", "dir"), methods=("gene_frequency", "core_voting"))
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    result = run_benchmark(config, workdir=args.out)
    t1 = time.perf_counter()
    preds = result.predictions
    thresholds = result.fitted.thresholds if result.fitted is not None else {}
    scores = cell_eval_scores(preds, thresholds)
    t2 = time.perf_counter()
    # the tables themselves, for anyone who wants to run the cell-eval CLI on them
    for (line, method), grp in preds[preds["task"] == "de"].groupby(["cell_line", "method"]):
        direction = preds[
            (preds["task"] == "dir") & (preds["cell_line"] == line) & (preds["method"] == method)
        ]
        thr = thresholds.get((str(line), "de", str(method)), 0.5)
        for ranking in ("p_de", "effect"):
            real, pred = de_tables(grp, thr, ranking, direction)
            write_frame(pred, args.out / f"{line}.{method}.{ranking}.pred_de.csv")
        write_frame(real, args.out / f"{line}.{method}.real_de.csv")
    write_frame(scores, args.out / "cell_eval_metrics.csv")
    scores["column"] = scores["method"] + " / " + scores["ranking"]
    keep = scores[~((scores["method"] == "gene_frequency") & (scores["ranking"] == "effect"))]
    wide = keep.pivot_table(index=["metric", "cell_line"], columns="column", values="value")
    mean = keep.pivot_table(index="metric", columns="column", values="value", aggfunc="mean")
    mean.index = pd.MultiIndex.from_product([mean.index, ["MEAN"]])
    print(pd.concat([wide, mean]).sort_index().round(4).to_string())
    print(
        f"\nfit + predict {t1 - t0:.0f}s, cell-eval {t2 - t1:.0f}s; gene_frequency / effect is left out: its "
        "effect is 0 everywhere (a random order)"
    )


if __name__ == "__main__":
    main()
