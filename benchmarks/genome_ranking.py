"""Choose the default ranking and the floor of the lists on the genome scale, on TRAINING perturbations only.

    python benchmarks/genome_ranking.py [--shared ../shared] [--cell-lines k562,rpe1,hepg2,jurkat]
                                        [--folds 4] [--seed 123] [--max-perturbations 60] [--oof FILE]

Test rows are dropped right after loading. Per line and fold of the training perturbations, the library's
``fit`` (core_voting, PerturbQA's case-control design, the genome map and calls included) runs on the other
folds; then every readout gene of the validation perturbations whose DE list is whole (fewer than 13 listed
genes, at most ``--max-perturbations``) is scored with ``predict_grid``. There every gene's label is known
(DE iff listed), so a list's excess DE over the genome is exact: (Σ label − Σ p_prior) / k over a
perturbation's k first genes, with ``p_prior`` on the genome scale (a ranking from gene-level information
alone scores about 0). Every candidate ranking is scored by it, the prior-only rules as controls; then floors
on the chosen ranking's key are compared by what the lists they leave hold, and the floor is the lowest band
edge above which every band of predicted excess carried a significant surplus (one-sided z >= 1.96) on
every line, the rule of ``inner_cv.py --compare ranking``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from _common import cached_frame, parser, start, surplus_floor, training_folds
from coreperturb import build_kg, fit, load_perturbqa
from coreperturb.data._design import PERTURBQA_CUT_FROM
from coreperturb.stages import FitConfig
from coreperturb.stages._grids import grid_plan, predict_grid

COLUMNS = [
    "cell_line",
    "perturbation",
    "gene",
    "p_de",
    "p_prior",
    "effect",
    "n_pos_evidence",
    "n_neg_evidence",
]


def fold_grids(args) -> pd.DataFrame:
    kg = build_kg(args.shared / "kg")
    table = load_perturbqa(args.shared / "perturbqa", args.cell_lines, ["de"])
    frame = table.frame.loc[table.frame["split"] == "train"].reset_index(drop=True)
    config = FitConfig(methods=("core_voting",), design="case_control", lists_cut_from=PERTURBQA_CUT_FROM)
    parts = []
    for line in args.cell_lines:
        for f, inner, val in training_folds(frame, line, args.folds, args.seed):
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                models = fit(inner, kg, config)
            n_de = val.groupby("perturbation")["label"].sum()
            whole = sorted(n_de.index[n_de.to_numpy() < PERTURBQA_CUT_FROM].astype(str))
            rng = np.random.default_rng(args.seed + f)
            if len(whole) > args.max_perturbations:
                whole = sorted(rng.choice(whole, size=args.max_perturbations, replace=False).tolist())
            plan = grid_plan(models, whole, cell_lines=[line])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                grid = pd.concat(list(predict_grid(models, plan)), ignore_index=True)
            grid = grid.loc[~grid["on_target"].astype(bool), COLUMNS]
            listed = val.loc[val["label"] == 1, ["perturbation", "gene"]].astype(str)
            key = pd.MultiIndex.from_frame(grid[["perturbation", "gene"]].astype(str))
            grid["label"] = key.isin(pd.MultiIndex.from_frame(listed)).astype(np.int8)
            scale, prior_scale = models.scale(line, "core_voting"), models.prior_scale(line)
            assert scale is not None and prior_scale is not None
            grid["p_de_sample"] = _inverse(scale, grid["p_de"].to_numpy())
            grid["p_prior_sample"] = _inverse(prior_scale, grid["p_prior"].to_numpy())
            parts.append(grid.assign(fold=f))
            print(
                f"{line} fold {f}: {len(whole)} whole-list perturbations x {grid['gene'].nunique()} genes "
                f"in {time.perf_counter() - t:.0f}s",
                flush=True,
            )
    return pd.concat(parts, ignore_index=True)


def _inverse(scale, p: np.ndarray) -> np.ndarray:
    """The table-scale probability of a genome-scale one (the map is increasing, so invertible)."""
    with np.errstate(divide="ignore"):
        z = (np.log(p) - np.log1p(-p) - scale.a) / scale.b
    return 1 / (1 + np.exp(-z))


RANKINGS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "excess over the genome: p_de - p_prior": lambda d: (d["p_de"] - d["p_prior"]).to_numpy(),
    "excess on the table's scale": lambda d: (d["p_de_sample"] - d["p_prior_sample"]).to_numpy(),
    "effect (shrunk log risk ratio)": lambda d: d["effect"].to_numpy(),
    "p_de": lambda d: d["p_de"].to_numpy(),
    "control: random order": lambda d: np.zeros(len(d)),
    "control: prior": lambda d: d["p_prior"].to_numpy(),
    "control: rarity (-prior)": lambda d: -d["p_prior"].to_numpy(),
}
BANDS = (-1.0, 0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 1.0)
FLOORS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05)


def top_k(d: pd.DataFrame, key: np.ndarray, k: int) -> pd.DataFrame:
    return (
        d.assign(_key=key)
        .sort_values(["perturbation", "_key"], ascending=[True, False], kind="stable")
        .groupby("perturbation", sort=False)
        .head(k)
    )


def excess_at(top: pd.DataFrame) -> float:
    surplus = top["label"] - top["p_prior"]
    return float(surplus.groupby(top["perturbation"]).mean().mean())


def main() -> None:
    ap = parser(__doc__, folds=True)
    ap.add_argument("--max-perturbations", type=int, default=60, help="whole-list validation perturbations")
    ap.add_argument("--oof", type=Path, default=None, help="cache of the fold grids (Parquet)")
    args = ap.parse_args()
    start(args)
    t0 = time.perf_counter()
    grids = cached_frame(args.oof, lambda: fold_grids(args))
    rows = []
    for (line, f), d in grids.groupby(["cell_line", "fold"], sort=True):
        for name, fn in RANKINGS.items():
            key = fn(d)
            rows.append(
                {
                    "cell_line": line,
                    "fold": f,
                    "candidate": name,
                    "excess_de_at_10": excess_at(top_k(d, key, 10)),
                    "excess_de_at_50": excess_at(top_k(d, key, 50)),
                    "precision_at_10": float(top_k(d, key, 10)["label"].mean()),
                }
            )
    res = pd.DataFrame(rows)
    for metric in ("excess_de_at_10", "excess_de_at_50", "precision_at_10"):
        tab = res.pivot_table(index="candidate", columns="cell_line", values=metric).reindex(list(RANKINGS))
        tab["mean"] = tab.mean(axis=1)
        print(f"\n{metric} over the genome, whole-list validation perturbations of the training split")
        print(tab.round(4).to_string())
    ranked = res[~res["candidate"].str.startswith("control")]
    best = ranked.groupby("candidate")["excess_de_at_10"].mean().idxmax()
    print(f"\nbest by mean excess DE@10 over the genome: {best}")
    d = grids.assign(_excess=grids["p_de"] - grids["p_prior"], _surplus=grids["label"] - grids["p_prior"])
    frows = []
    for (line, _f), g in d.groupby(["cell_line", "fold"], sort=True):
        top = top_k(g, RANKINGS[best](g), 10)
        n_p = g["perturbation"].nunique()
        for tau in FLOORS:
            kept = top[(top["_excess"] >= tau) & (top["n_pos_evidence"] > 0)]
            frows.append(
                {
                    "cell_line": line,
                    "floor": tau,
                    "listed": len(kept) / n_p,
                    "surplus": float(kept["_surplus"].sum()),
                    "n": len(kept),
                    "hits": float(kept["label"].sum()),
                }
            )
    fr = pd.DataFrame(frows).groupby(["cell_line", "floor"]).sum(numeric_only=True)
    fr["listed_per_perturbation"] = fr["listed"] / args.folds
    fr["excess_per_listed"] = fr["surplus"] / fr["n"]
    fr["precision"] = fr["hits"] / fr["n"]
    print("\nfloors on p_de - p_prior (and n_pos_evidence > 0) of the top 10:")
    print(fr[["listed_per_perturbation", "excess_per_listed", "precision"]].round(4).to_string())
    surplus_floor(d, BANDS, digits=5)
    print(f"({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
