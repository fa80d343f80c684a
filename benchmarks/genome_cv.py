"""Is P(DE) over the genome calibrated where the calls are made? Checked on TRAINING perturbations only.

    python benchmarks/genome_cv.py [--shared ../shared] [--cell-lines k562,rpe1,hepg2,jurkat]
                                   [--folds 4] [--seed 123] [--fit-seed N] [--run-folds 0,1]
                                   [--max-perturbations 150]
                                   [--out genome_cv.parquet] [--from-grid genome_cv.parquet]

For each fold run: the default model of the lines together (as ``coreperturb fit``) is fitted on the other folds
of every line's training perturbations; the held-out fold's perturbations whose DE list is whole (fewer than
the design's ``lists_cut_from`` listed genes) are asked about every readout gene (``predict_grid``). A
case-control table lists every DE gene of such a perturbation, so each grid pair's label is known (DE iff
listed), which PerturbQA's own sample of asked not-DE pairs (one in 50–90) cannot show where P(DE) is high:
there the calibration rows hold almost no asked not-DE pair.

Prints, over the off-target grid pairs (a perturbation's own target is never asked): mean P(DE) against the
DE rate in bands of P(DE), the precision of the ``DE`` calls per line, and the DE rate of the k pairs ranked
first by P(DE) (the best precision any threshold could give), and per line and fold a map refitted on those
P(DE): on every grid pair, and on the asked pairs only, weighted as a fit without a grid weights them (how far
each estimate moves from fold to fold), Σ P(DE) / DE genes split by whether another line's training rows
screened the perturbation, and the inverse-probability estimate of mean P(DE) / DE rate from the asked pairs
(``metrics.csv``'s ``genome_de_ratio``) against the exact figure, with ``1 / s_p`` alone and with each gene's
asking factor at several shrinkages (where ``ASKING_PRIOR_ASKS`` and ``ASKING_BINS`` were chosen). ``--from-grid FILE`` prints them from a grid saved with ``--out``, without fitting.
The test split is never read.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from _common import parser, start, write_frame
from coreperturb import build_kg, fit, load_perturbqa
from coreperturb._util import logit
from coreperturb.data._design import PERTURBQA_CUT_FROM, SamplingDesign, asking_factors
from coreperturb.data._schema import QueryTable
from coreperturb.evaluation._genome import genome_weights
from coreperturb.predictors._base import perturbation_folds
from coreperturb.stages import FitConfig
from genome_scale import genome_query, ratio_interval

TOP_K = (10, 20, 50, 100, 200)
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
        seed = args.seed if args.fit_seed is None else args.fit_seed
        models = fit(inner, kg, FitConfig(methods=("core_voting",), seed=seed))
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


def refits(off: pd.DataFrame, table: QueryTable) -> pd.DataFrame:
    """Per line and fold, a map refitted on the grid's genome-scale P(DE): on every pair (the grid) and on the
    pairs the table asked, each asked not-DE pair weighted by ``1 / s_p`` (the fit of models without a grid).
    The closer ``a`` is to 0 and ``b`` to 1, the better the fitted maps were already."""
    f = table.frame
    rows = []
    for (line, fold), grid in off.dropna(subset=["p_de"]).groupby(["cell_line", "fold"], sort=True):
        asked_rows = f.loc[(f["cell_line"].astype(str) == line) & (f["task"].astype(str) == "de")]
        asked_keys = pd.MultiIndex.from_arrays(
            [asked_rows["perturbation"].astype(str), asked_rows["gene"].astype(str)]
        )
        key = pd.MultiIndex.from_arrays([grid["perturbation"].astype(str), grid["gene"].astype(str)])
        asked = key.isin(asked_keys)
        per = (
            grid.assign(asked=asked)
            .groupby("perturbation")
            .agg(genes=("label", "size"), de=("label", "sum"), asked_not=("asked", "sum"))
        )
        per["asked_not"] -= per["de"]  # every listed DE gene is asked
        share = (per["asked_not"] / (per["genes"] - per["de"])).clip(lower=1e-9)
        y = grid["label"].to_numpy()
        w = np.where(y == 1, 1.0, 1.0 / share.reindex(grid["perturbation"]).to_numpy())
        x = logit(grid["p_de"].to_numpy(), eps=1e-12)[:, None]
        on_grid = LogisticRegression(C=1e6, max_iter=1000).fit(x, y)
        weighted = LogisticRegression(C=1e6, max_iter=1000).fit(x[asked], y[asked], sample_weight=w[asked])
        rows.append(
            {
                "cell_line": line,
                "fold": fold,
                "grid_a": on_grid.intercept_[0],
                "grid_b": on_grid.coef_[0, 0],
                "asked_a": weighted.intercept_[0],
                "asked_b": weighted.coef_[0, 0],
                "asked_not_de": int((asked & (y == 0)).sum()),
            }
        )
    return pd.DataFrame(rows)


PRIOR_ASKS = (0.0, 10.0, 30.0, 100.0, 300.0)
"""Shrinkage of the asking factors compared (``ASKING_PRIOR_ASKS`` is chosen among them here)."""


def ipw_against_exact(grid: pd.DataFrame, table: QueryTable) -> pd.DataFrame:
    """Per line and fold: mean P(DE) / DE rate over every off-target grid pair (exact), against its
    inverse-probability estimate from the pairs the table asked (``metrics.csv``'s ``genome_de_ratio``), each
    asked not-DE pair standing for ``1 / s_p`` genome pairs, or for ``1 / (s_p r_g)`` with its gene's asking
    factor (binned by the grid's gene priors, as ``evaluate`` bins them) shrunk by ``k`` asks; the same for the
    priors. Last rows: the mean |log(estimate / exact)| over lines and folds of each column."""
    f = table.frame
    rows = []
    for (line, fold), g in grid.dropna(subset=["p_de"]).groupby(["cell_line", "fold"], sort=True):
        universe = int(g.groupby("perturbation").size().max())
        g = g.loc[~g["on_target"].astype(bool)]  # a perturbation's own target is decided by rule, not asked
        t = f.loc[(f["cell_line"].astype(str) == line) & (f["task"].astype(str) == "de")]
        keys = pd.MultiIndex.from_arrays([t["perturbation"].astype(str), t["gene"].astype(str)])
        asked = g.loc[pd.MultiIndex.from_arrays([g["perturbation"].astype(str), g["gene"]]).isin(keys)]
        y, p = asked["label"].to_numpy(), asked["perturbation"].astype(str).to_numpy()
        design = SamplingDesign("case_control", PERTURBQA_CUT_FROM, "stated")
        w, whole = genome_weights(y, p, design, universe)
        priors = g.groupby("gene", sort=False)["p_prior"].first()
        row = {"cell_line": line, "fold": fold, "exact": g["p_de"].sum() / g["label"].sum()}
        row["exact prior"] = g["p_prior"].sum() / g["label"].sum()
        for k in (None, *PRIOR_ASKS):
            ww = w
            if k is not None:
                factor = asking_factors(asked, priors, pd.Index(np.unique(p[whole])), prior_asks=k)
                ww = np.where(y == 1, w, w / factor.reindex(asked["gene"]).to_numpy())
            name = "1/s_p" if k is None else f"r_g k={k:g}"
            row[name] = (ww * asked["p_de"]).sum() / (ww * y).sum()
            row[f"{name} prior"] = (ww * asked["p_prior"]).sum() / (ww * y).sum()
        rows.append(row)
    out = pd.DataFrame(rows)
    est = [c for c in out.columns if c.startswith(("1/s_p", "r_g"))]
    err = {
        c: float(np.abs(np.log(out[c] / out["exact prior" if c.endswith("prior") else "exact"])).mean())
        for c in est
    }
    return pd.concat([out, pd.DataFrame([{"cell_line": "mean |log(est/exact)|", **err}])], ignore_index=True)


def by_screened_elsewhere(off: pd.DataFrame, table: QueryTable) -> pd.DataFrame:
    """Per line: Σ P(DE) / DE genes over the grids of the held-out perturbations another line's training
    rows screened, and of the others (a line's test perturbations may be screened elsewhere more often than
    its calibration perturbations)."""
    f = table.frame.loc[table.frame["split"].astype(str) == "train"]
    rows = []
    for line, grid in off.groupby("cell_line", sort=True):
        elsewhere = set(f.loc[f["cell_line"].astype(str) != line, "perturbation"].astype(str))
        screened = grid["perturbation"].astype(str).isin(elsewhere).to_numpy()
        for name, m in (("screened elsewhere", screened), ("only here", ~screened)):
            g = grid.loc[m]
            rows.append(
                {
                    "cell_line": line,
                    "perturbations": name,
                    "n": g["perturbation"].nunique(),
                    "sum_p_over_de": g["p_de"].sum() / max(g["label"].sum(), 1),
                    "sum_prior_over_de": g["p_prior"].sum() / max(g["label"].sum(), 1),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    ap = parser(__doc__, folds=True)
    ap.add_argument("--run-folds", default="0,1", help="which folds to hold out (each is one fit)")
    ap.add_argument(
        "--fit-seed",
        type=int,
        default=None,
        help="seed of the fit (its calibration slice and grid) where it should differ from --seed: the same "
        "held-out perturbations under another fit",
    )
    ap.add_argument(
        "--max-perturbations", type=int, default=150, help="whole-list perturbations per line and fold"
    )
    ap.add_argument("--out", type=Path, default=None, help="Parquet of every grid pair (p_de, label, call)")
    ap.add_argument(
        "--from-grid", type=Path, default=None, help="a grid written by --out: its figures, without fitting"
    )
    args = ap.parse_args()
    start(args)
    table = load_perturbqa(args.shared / "perturbqa", args.cell_lines, ["de"])
    if args.from_grid is not None:
        grid = pd.read_parquet(args.from_grid)
    else:
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
    for (line, fold), g in off.groupby(["cell_line", "fold"], sort=True):
        lo, hi = ratio_interval(g["perturbation"], g["p_de"], g["label"])
        print(
            f"  {line} fold {fold}: {g['p_de'].sum() / g['label'].sum():.3f}, 95% interval over its perturbations {lo:.3f}–{hi:.3f}"
        )
    print(
        "\nthe same, exact (every grid pair) against its inverse-probability estimate from the asked pairs "
        "(each asked not-DE pair for 1 / s_p genome pairs, or 1 / (s_p r_g) with its gene's asking factor):"
    )
    print(ipw_against_exact(grid, table).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nthe same, by whether another line's training rows screened the perturbation:")
    print(by_screened_elsewhere(off, table).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    calls = off.loc[off["call"] == "DE"]
    print(
        f"\nDE calls: {len(calls)}, right {calls['label'].mean():.3f}" if len(calls) else "\nDE calls: none"
    )
    if len(calls):
        print(calls.groupby("cell_line")["label"].agg(calls="size", right="sum").to_string())
    ranked = off.dropna(subset=["p_de"]).sort_values("p_de", ascending=False, kind="stable")
    print(
        "\nDE rate of the k pairs with the highest P(DE), pooled (whatever the threshold, a call cannot be more "
        "precise than its ranking):",
        {k: round(float(ranked["label"].head(k).mean()), 3) for k in TOP_K},
    )
    print(
        "\nA map refitted on these P(DE), on every grid pair against on the asked pairs weighted by 1 / s_p "
        "(a 0 and b 1: nothing to correct):"
    )
    print(refits(off, table).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out is not None:
        write_frame(grid, args.out)


if __name__ == "__main__":
    main()
