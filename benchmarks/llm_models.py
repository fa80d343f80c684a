"""Embedded LLMs compared: isolated reasoning vs CORE-Reasoning on stratified K562 test queries.

Usage:
    python benchmarks/llm_models.py [--shared ../shared/data] [--models smollm2-135m,gemma3-270m]
                                    [--max-queries 2000] [--calibration-queries 200] [--reasoning-tokens 0]
                                    [--out runs/llm_models]

For each embedded model (``coreperturb benchmark --llm embedded --model NAME``), both LLM methods are fitted
on the K562 DE training split (Platt calibration on ``--calibration-queries`` held-out TRAIN queries) and
scored on the same ``--max-queries`` test queries, sampled gene by gene. Prints, per model and method:
pooled and macro per-gene AUROC, predicted-DE rate (vs the true rate), ECE, LLM calls, tokens, errors and
wall time; and the TRAIN-only selection figure: macro per-gene AUROC of the raw P(yes) on the calibration
queries (which model reads evidence better, decided without the test split). Answers are cached in the
shared response cache, so a rerun only re-scores.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import parser, start, write_frame
from coreperturb._pipeline import BenchmarkConfig, load_inputs, run_benchmark
from coreperturb.evaluation._metrics import macro_per_gene_auroc


def main() -> None:
    ap = parser(__doc__, cell_lines=False)
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--cell-line", default="k562")
    ap.add_argument("--max-queries", type=int, default=2000)
    ap.add_argument("--calibration-queries", type=int, default=200)
    ap.add_argument("--reasoning-tokens", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=200, help="resamples of test perturbations for 95%% CIs")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/llm_models"))
    args = ap.parse_args()
    start(args, threads=args.threads)
    rows = []
    inputs = None
    for name in args.models.split(","):
        extra = {"n_threads": args.threads} if args.threads else {}
        config = BenchmarkConfig.from_options(
            data_dir=args.shared / "perturbqa",
            kg_dir=args.shared / "kg",
            cell_lines=(args.cell_line,),
            methods=("llm_isolated", "core_reasoning"),
            llm="embedded",
            llm_model=name,
            llm_extra=extra,
            max_queries=args.max_queries,
            calibration_queries=args.calibration_queries,
            reasoning_tokens=args.reasoning_tokens,
            bootstrap=args.bootstrap,
        )
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        if inputs is None:
            inputs = load_inputs(config, out)
        t0 = time.perf_counter()
        result = run_benchmark(config, workdir=out, inputs=inputs)
        wall = time.perf_counter() - t0
        write_frame(result.metrics, out / "metrics.csv")
        if result.llm_details is not None:
            write_frame(result.llm_details, out / "llm_details.parquet")
        mi = result.metrics.set_index(["method", "metric"])
        m = mi["value"]
        for (_, _, method), model in result.models.items():
            cal = getattr(model, "calibration_scores_", None)
            train_auc = np.nan
            cal_answered = cal_genes = 0
            if cal is not None:
                ok = cal["p_yes"].notna().to_numpy()
                c = cal[ok]
                cal_answered = int(ok.sum())
                both = c.groupby("gene")["label"].nunique()
                cal_genes = int((both == 2).sum())
                train_auc = macro_per_gene_auroc(
                    c["label"].to_numpy(),
                    c["p_yes"].to_numpy(dtype=float),
                    c["gene"].astype(str).to_numpy(),
                    c["perturbation"].to_numpy(),
                    0.5,
                )
            st = result.llm_stats[method]
            rows.append(
                {
                    "model": name,
                    "method": method,
                    "train_cal_per_gene_auroc": train_auc,
                    "train_cal_answered": f"{cal_answered}/{0 if cal is None else len(cal)}",
                    "train_cal_genes": cal_genes,
                    "per_gene_auroc": m.get((method, "macro_per_gene_auroc")),
                    "per_gene_ci": "[{:.3f}, {:.3f}]".format(
                        *mi.loc[(method, "macro_per_gene_auroc"), ["ci_low", "ci_high"]]
                    ),
                    "genes": m.get((method, "n_genes_per_gene_auroc")),
                    "pooled_auroc": m.get((method, "auroc")),
                    "pred_de_rate": m.get((method, "pred_pos_rate")),
                    "true_de_rate": m.get((method, "true_pos_rate")),
                    "ece": m.get((method, "ece")),
                    "n_scored": m.get((method, "n_scored")),
                    "errors": st.n_errors,
                    "verbal": st.n_verbal,
                    "calls": st.n_calls,
                    "cache_hits": st.n_cache_hits,
                    "empty_rationales": st.n_empty_rationales,
                    "prompt_tokens": st.prompt_tokens,
                    "completion_tokens": st.completion_tokens,
                    "backend_s": round(st.backend_seconds, 1),
                    "wall_s": round(wall, 1),
                }
            )
        print(pd.DataFrame(rows).round(4).to_string(index=False), flush=True)
    res = pd.DataFrame(rows)
    write_frame(res, args.out / "summary.csv")
    print("\nper model and method (wall_s is the model's whole run: both methods, calibration included):")
    print(res.round(4).to_string(index=False))
    core = res[res["method"] == "core_reasoning"].set_index("model")["train_cal_per_gene_auroc"]
    if core.notna().any():
        print(f"\nbetter on TRAIN calibration queries (core_reasoning, raw P(yes)): {core.idxmax()}")


if __name__ == "__main__":
    main()
