"""Is P(DE) over the genome calibrated where the calls are made? Checked on TRAINING perturbations only.

    python benchmarks/genome_cv.py [--shared ../shared] [--cell-lines k562,rpe1,hepg2,jurkat]
                                   [--folds 4] [--seed 123] [--run-folds 0,1] [--max-perturbations 150]
                                   [--out genome_cv.parquet]

For each fold run: the default model of the lines together (as ``coreperturb fit``) is fitted on the other folds
of every line's training perturbations; the held-out fold's perturbations whose DE list is whole (fewer than
the design's ``lists_cut_from`` listed genes) are asked about every readout gene (``predict_grid``). A
case-control table lists every DE gene of such a perturbation, so each grid pair's label is known (DE iff
listed), which PerturbQA's own sample of asked not-DE pairs (one in 50–90) cannot show where P(DE) is high:
there the calibration rows hold almost no asked not-DE pair.

Prints, over the off-target grid pairs (a perturbation's own target is never asked): mean P(DE) against the
DE rate in bands of P(DE), and the precision of the ``DE`` calls per line. The test split is never read.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from _common import parser, start, write_frame
from coreperturb import build_kg, fit, load_perturbqa
from coreperturb.data._schema import QueryTable
from coreperturb.predictors._base import perturbation_folds
from coreperturb.stages import FitConfig
from genome_scale import genome_query

BANDS = (0.0, 0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0001)
KEEP = ["cell_line", "perturbation", "gene", "p_de", "p_prior", "label", "call", "on_target"]


def fold_grid(table: QueryTable, kg, lines: list[str], args, fold: int) -> pd.DataFrame:
    """The labelled genome grid of one held-out fold of training perturbations."""
    f = table.frame.loc[table.frame["split"].astype(str) == "train"].copy()
    f["split"] = f["split"].astype(str)
    held = np.zeros(len(f), dtype=bool)
    for line in lines:
        m = (f["cell_line"].astype(str) == line).to_numpy()
        held[
            np.flatnonzero(m)[perturbation_folds(f.loc[m, "perturbation"], args.folds, args.seed) == fold]
        ] = True
    f.loc[held, "split"] = "test"
    inner = QueryTable(f.reset_index(drop=True), f"fold {fold}", design=table.design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = fit(inner, kg, FitConfig(methods=("core_voting",), seed=args.seed))
    out = inner.frame.loc[inner.frame["split"].astype(str) == "test"]
    grids = []
    for line in lines:
        rows = out.loc[out["cell_line"].astype(str) == line]
        grid = genome_query(models, rows, line, args.max_perturbations, args.seed, ["core_voting"])
        grids.append(grid.assign(cell_line=line, fold=fold)[[*KEEP, "fold"]])
        print(
            f"fold {fold} {line}: {grid['perturbation'].nunique()} whole-list perturbations, {len(grid):,} pairs",
            flush=True,
        )
    return pd.concat(grids, ignore_index=True)


def main() -> None:
    ap = parser(__doc__, folds=True)
    ap.add_argument("--run-folds", default="0,1", help="which folds to hold out (each is one fit)")
    ap.add_argument(
        "--max-perturbations", type=int, default=150, help="whole-list perturbations per line and fold"
    )
    ap.add_argument("--out", type=Path, default=None, help="Parquet of every grid pair (p_de, label, call)")
    args = ap.parse_args()
    start(args)
    table = load_perturbqa(args.shared / "perturbqa", args.cell_lines, ["de"])
    kg = build_kg(args.shared / "kg")
    runs = [int(x) for x in args.run_folds.split(",") if x]
    grid = pd.concat([fold_grid(table, kg, args.cell_lines, args, f) for f in runs], ignore_index=True)
    off = grid.loc[~grid["on_target"].astype(bool)].copy()
    off["band"] = pd.cut(off["p_de"], BANDS, right=False)
    print(
        "\nP(DE) over the genome against the DE rate (off-target pairs of held-out training perturbations):"
    )
    print(
        off.groupby("band", observed=True)
        .agg(pairs=("label", "size"), mean_p_de=("p_de", "mean"), de_rate=("label", "mean"))
        .to_string(float_format=lambda v: f"{v:.4f}")
    )
    per = off.groupby(["cell_line", "fold", "perturbation"]).agg(
        expected=("p_de", "sum"), observed=("label", "sum")
    )
    ratio = per.groupby("cell_line").sum()
    print("\nΣ P(DE) / DE genes over the grids:", (ratio["expected"] / ratio["observed"]).round(3).to_dict())
    calls = off.loc[off["call"] == "DE"]
    print(
        f"\nDE calls: {len(calls)}, right {calls['label'].mean():.3f}" if len(calls) else "\nDE calls: none"
    )
    if len(calls):
        print(calls.groupby("cell_line")["label"].agg(calls="size", right="sum").to_string())
    if args.out is not None:
        write_frame(grid, args.out)


if __name__ == "__main__":
    main()
