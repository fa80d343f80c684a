"""Choose CORE-Voting settings on TRAINING perturbations only: 4-fold inner cross-validation per cell line.

Usage:
    python benchmarks/inner_cv.py [--shared ../shared/data] [--cell-lines k562,rpe1,hepg2,jurkat] [--folds 4]
                                  [--compare combiners|transfer]

Test rows are dropped right after loading; they are never used. For each cell line, the training perturbations are split into
``--folds`` groups; each group in turn is the validation set, CORE-Voting is fitted on the remaining training
perturbations with each candidate combiner, and the macro per-gene AUROC on the validation group is recorded.
Prints every (line, fold) score, the mean per candidate, and the paired difference of every candidate against
the first one (mean, standard error over line × fold, number of wins).

``--compare combiners`` (default) compares CORE-Voting combiners; ``--compare transfer`` compares
``core_voting`` with ``core_voting_transfer``, which also gets the TRAINING rows of the other cell lines as
context (exactly what the benchmark passes it; the validation line's own rows are never context).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from coreperturb.evaluate.metrics import macro_per_gene_auroc
from coreperturb.graph.kg import KnowledgeGraph
from coreperturb.pipeline import BenchmarkConfig, context_rows, resolve_inputs
from coreperturb.predictors.base import perturbation_folds
from coreperturb.predictors.core_voting import CoreVoting, CoreVotingTransfer


def candidates(compare: str, kg: KnowledgeGraph) -> dict[str, CoreVoting]:
    """Unfitted models compared; the first is the reference."""
    if compare == "transfer":
        return {"core_voting": CoreVoting(kg), "core_voting_transfer": CoreVotingTransfer(kg)}
    old = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=100, random_state=0
    )
    return {
        "boosting (31 leaves, min leaf 100)": CoreVoting(kg, combiner=old),
        "boosting (default: 15 leaves, min leaf 200, l2 1)": CoreVoting(kg),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--cell-lines", default="k562,rpe1,hepg2,jurkat")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--compare", choices=("combiners", "transfer"), default="combiners")
    args = ap.parse_args()
    if not (args.shared / "perturbqa").is_dir():
        sys.exit(f"PerturbQA data not found under {args.shared}")
    lines = args.cell_lines.split(",")
    config = BenchmarkConfig(
        data_dir=args.shared / "perturbqa", kg_dir=args.shared / "kg", cell_lines=tuple(lines), tasks=("de",)
    )
    table, kg = resolve_inputs(config, Path("."))  # the table and KG exactly as the benchmark builds them
    rows = []
    t0 = time.perf_counter()
    for line in lines:
        frame = table.frame
        train = frame[(frame["cell_line"] == line) & (frame["split"] == "train")].reset_index(drop=True)
        context = context_rows(table, line, "de")
        fold = perturbation_folds(train["perturbation"], args.folds, args.seed)
        for f in range(args.folds):
            inner, val = train[fold != f].reset_index(drop=True), train[fold == f].reset_index(drop=True)
            for name, model in candidates(args.compare, kg).items():
                model.fit(inner, context=context if model.uses_context else None)
                p = model.predict_proba(val)[:, 1]
                y, genes_v = val["label"].to_numpy(), val["gene"].astype(str).to_numpy()
                score = macro_per_gene_auroc(y, p, genes_v, val["perturbation"].to_numpy(), 0.5)
                rows.append({"cell_line": line, "fold": f, "candidate": name, "auroc": score})
                print(f"{line} fold {f} {name}: {score:.4f}", flush=True)
    res = pd.DataFrame(rows)
    wide = res.pivot_table(index=["cell_line", "fold"], columns="candidate", values="auroc")
    names = list(candidates(args.compare, kg))
    print(f"\ninner-CV macro per-gene AUROC (train perturbations only; {time.perf_counter() - t0:.0f}s)")
    print(res.pivot_table(index="candidate", columns="cell_line", values="auroc").round(4).to_string())
    ref = wide[names[0]]
    for name in names:
        d = wide[name] - ref
        print(
            f"{name}: mean {wide[name].mean():.4f}  vs first: {d.mean():+.4f} "
            f"(se {d.std(ddof=1) / np.sqrt(len(d)):.4f}, wins {(d > 0).sum()}/{len(d)})"
        )


if __name__ == "__main__":
    main()
