"""Specificity, the floor and the calls of a benchmark run, beside gene frequency and prior-only rankings.

Usage:
    coreperturb benchmark --data-dir ../shared/data/perturbqa --kg-dir ../shared/data/kg \\
        --cell-lines k562,rpe1,hepg2,jurkat --tasks de,dir --methods gene_frequency,core_voting --out runs/spec
    python benchmarks/specificity.py runs/spec [--method core_voting]

Reads ``predictions.parquet`` of the run (test split) and prints, per cell line:

- excess DE@10 / @50 of every ranking of the genes within each test perturbation: the default (``excess``
  = p_de − p_prior), ``effect`` (the earlier default), ``p_de``, and the prior-only controls (the prior,
  the prior below 0.2, rarity), which know nothing about the perturbation and must score about 0;
- the top 10 by the default ranking before and after the floor (``p_de − p_prior >= 0.03``): listed genes
  per perturbation and the share with ``p_de < 0.05``;
- the conformal calls of the DE and direction tasks: coverage (overall, worst prior decile, truly positive
  rows) and the uncertain rate, beside gene frequency's at the same confidence.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from coreperturb.evaluation._calls import call_metrics
from coreperturb.evaluation._metrics import excess_de_at
from coreperturb.predictors._conformal import CALL_LABELS
from coreperturb.stages._ranking import MIN_EXCESS


def rankings(d: pd.DataFrame) -> dict[str, np.ndarray]:
    """Ranking keys of one method's DE rows."""
    s, pr = d["score"].to_numpy(), d["p_prior"].to_numpy()
    return {
        "excess (default)": s - pr,
        "effect (earlier default)": d["effect"].to_numpy(),
        "p_de": s,
        "control: prior": pr,
        "control: prior below 0.2": np.where(pr < 0.2, pr, -np.inf),
        "control: rarity (-prior)": -pr,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a benchmark output directory (predictions.parquet)")
    ap.add_argument("--method", default="core_voting")
    args = ap.parse_args()
    preds = pd.read_parquet(args.run / "predictions.parquet")
    de = preds[preds["task"] == "de"]
    rows = []
    for line, d in de[de["method"] == args.method].groupby("cell_line", sort=True):
        y, p, pr = d["label"].to_numpy(), d["perturbation"].to_numpy(), d["p_prior"].to_numpy()
        for name, key in rankings(d).items():
            rows.append(
                {
                    "cell_line": line,
                    "ranking": name,
                    "excess_de_at_10": excess_de_at(y, pr, key, p, 10),
                    "excess_de_at_50": excess_de_at(y, pr, key, p, 50),
                }
            )
    tab = pd.DataFrame(rows).pivot_table(index="ranking", columns="cell_line", values="excess_de_at_10")
    tab = tab.reindex(list(rankings(de.head(1))))
    tab["mean"] = tab.mean(axis=1)
    print(f"excess DE@10 of {args.method}'s rankings, test split:")
    print(tab.round(4).to_string())
    tab50 = pd.DataFrame(rows).pivot_table(index="ranking", columns="cell_line", values="excess_de_at_50")
    tab50["mean"] = tab50.mean(axis=1)
    print("\nexcess DE@50:")
    print(tab50.reindex(tab.index).round(4).to_string())

    floor_rows = []
    for (line, method), d in de.groupby(["cell_line", "method"], sort=True):
        d = d.assign(_x=d["score"] - d["p_prior"])
        top = d.sort_values(["perturbation", "_x"], ascending=[True, False], kind="stable")
        top = top.groupby("perturbation", sort=False).head(10)
        kept = top[(top["_x"] >= MIN_EXCESS) | top.get("on_target", False)]
        n = d["perturbation"].nunique()
        floor_rows.append(
            {
                "cell_line": line,
                "method": method,
                "top10 p_de<0.05, no floor": float((top["score"] < 0.05).mean()),
                "after the floor": float((kept["score"] < 0.05).mean()) if len(kept) else float("nan"),
                "listed per perturbation": len(kept) / n,
                "perturbations with < 10 listed": float(
                    (
                        kept.groupby("perturbation").size().reindex(pd.unique(d["perturbation"])).fillna(0)
                        < 10
                    ).mean()
                ),
            }
        )
    print(f"\nthe top 10 by excess before and after the floor (p_de - p_prior >= {MIN_EXCESS}):")
    print(pd.DataFrame(floor_rows).round(4).to_string(index=False))

    if "call" in preds.columns:
        call_rows = []
        for (line, task, method), d in preds.groupby(["cell_line", "task", "method"], sort=True):
            m = call_metrics(d["label"], d["call"].fillna(""), d["p_prior"], CALL_LABELS[str(task)][0])
            call_rows.append({"cell_line": line, "task": task, "method": method, **m})
        print("\nconformal calls at the model's confidence, test split:")
        print(pd.DataFrame(call_rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
