"""Numbers over the genome: PerturbQA test perturbations with whole DE lists, every readout gene asked.

    python benchmarks/genome_scale.py [--shared ../shared] [--cell-lines k562,rpe1,hepg2,jurkat]
                                      [--max-perturbations 150] [--out genome.csv] [--dataset lincs]
                                      [--together]

Per line: fit ``gene_frequency`` and ``core_voting`` (DE and direction) on the training split, then

1. the test split as PerturbQA asks it, with the genome metrics of :func:`coreperturb.evaluation._genome`
   (inverse-probability weights of the asked not-DE pairs): mean P(DE) over the genome against the DE rate,
   precision of ``DE`` calls and coverage over the genome, per-gene AUROC (the same on both scales);
2. a genome-wide query (``predict_grid``: every readout gene) of the test perturbations whose DE list is whole
   (fewer than 13 listed genes in PerturbQA, every LINCS compound; at most ``--max-perturbations``): there every gene's label is known (DE
   iff listed), so Σ P(DE) per perturbation against its listed DE genes, and the excess DE@10 of the
   default lists over the genome (mean of label - p_prior over the listed genes; gene_frequency's is 0 by
   construction) are exact, and so are the mean P(DE) over every off-target grid pair against their DE rate
   (``grid_mean_ratio``, with a 95% bootstrap interval over the perturbations, ``grid_mean_ratio_lo`` /
   ``_hi``; ``grid_prior_ratio`` the same of the gene priors) and the precision of the ``DE`` calls there (``grid_de_call_precision``,
   off-target pairs: no sampled not-DE pair stands for 50-90 others; a perturbation's own target is never
   asked in PerturbQA, so its label is unknown and its call is left out).

``--together`` fits the lines in one model (the default of a fit of several lines: each line's answer blends
the other lines'); without it, one model per line. ``--asking-rates`` only prints, per split, how often the
whole-list perturbations ask a gene as a not-DE gene per chance, relative to the mean gene, by bin of its
training DE listings (the asking factors that ``genome_de_ratio`` and the calls' genome weights divide by; a
bin that ties swallow shows as ``·``).

Every default was chosen on training data; the test split is scored once here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from _common import parser, start, write_frame
from coreperturb import build_kg, evaluate_predictions, fit, load_perturbqa, predict
from coreperturb.data._design import ASKING_BINS, PERTURBQA_CUT_FROM, asking_factors, listing_rate
from coreperturb.data._signatures import load_lincs
from coreperturb.stages import FitConfig
from coreperturb.stages._grids import grid_plan, predict_grid
from coreperturb.stages._ranking import MIN_EXCESS, rank_predictions

KEEP = (
    "macro_per_gene_auroc",
    "excess_de_at_10",
    "genome_de_ratio",
    "genome_prior_ratio",
    "genome_observed_de",
    "genome_expected_de",
    "genome_de_call_precision",
    "genome_de_calls",
    "de_call_precision",
    "genome_coverage",
    "coverage",
    "coverage_min_prior_decile",
    "uncertain_rate",
)


def genome_query(
    models, test: pd.DataFrame, line: str, max_perts: int, seed: int, methods: list[str]
) -> pd.DataFrame:
    """Every readout gene × the whole-list test perturbations, labelled (DE iff listed)."""
    de = test.loc[test["task"] == "de"]
    n_de = de.groupby("perturbation")["label"].sum()
    design = models.design_of(line)
    cut = design.lists_cut_from if design is not None else None
    whole = sorted(n_de.index[n_de.to_numpy() < (cut or np.inf)].astype(str))
    rng = np.random.default_rng(seed)
    if len(whole) > max_perts:
        whole = sorted(rng.choice(whole, size=max_perts, replace=False).tolist())
    plan = grid_plan(models, whole, cell_lines=[line])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = pd.concat(list(predict_grid(models, plan, methods=methods)), ignore_index=True)
    listed = set(map(tuple, de.loc[de["label"] == 1, ["perturbation", "gene"]].astype(str).to_numpy()))
    grid["label"] = [int((p, g) in listed) for p, g in zip(grid["perturbation"], grid["gene"], strict=True)]
    return grid


def ratio_interval(
    perturbations: pd.Series, p_de: pd.Series, labels: pd.Series, *, draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """A 95% bootstrap interval of Σ P(DE) / Σ DE over the grid, perturbations resampled: how much of a gap
    between the ratio and 1 a draw of this many perturbations leaves to chance."""
    per = pd.DataFrame({"p": perturbations.to_numpy(), "e": p_de.to_numpy(), "o": labels.to_numpy()})
    sums = per.groupby("p", sort=True)[["e", "o"]].sum().to_numpy()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(sums), size=(draws, len(sums)))
    ratios = sums[pick, 0].sum(axis=1) / np.maximum(sums[pick, 1].sum(axis=1), 1)
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    return float(lo), float(hi)


def grid_figures(grid: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for method, g in grid.groupby("method", sort=False):
        per = g.groupby("perturbation").agg(expected=("p_de", "sum"), observed=("label", "sum"))
        # a perturbation's own target is never asked in PerturbQA (its label is unknown, not "not listed")
        off = ~g["on_target"].to_numpy(dtype=bool) if "on_target" in g.columns else np.ones(len(g), bool)
        called = g.loc[off & (g["call"] == "DE").to_numpy()] if "call" in g.columns else g.iloc[:0]
        lifted = g.loc[off & (g["excess"] >= MIN_EXCESS).to_numpy()]
        has_ev = lifted["n_pos_evidence"].to_numpy() > 0
        floored = rank_predictions(g, 10, min_excess=MIN_EXCESS)
        unfloored = rank_predictions(g, 10, min_excess=None)
        rows.append(
            {
                "method": method,
                "grid_perturbations": len(per),
                "grid_median_expected_de": float(per["expected"].median()),
                "grid_median_observed_de": float(per["observed"].median()),
                "grid_median_ratio": float(per["expected"].median() / max(per["observed"].median(), 1e-9)),
                # mean P(DE) over every off-target grid pair / their DE rate: exact, no weights; beside it the
                # priors' (how far these test perturbations' DE rate lies from the training one)
                "grid_mean_ratio": float(g.loc[off, "p_de"].sum() / max(g.loc[off, "label"].sum(), 1)),
                "grid_prior_ratio": float(g.loc[off, "p_prior"].sum() / max(g.loc[off, "label"].sum(), 1)),
                # how far another draw of as many perturbations could land (perturbations resampled)
                **dict(
                    zip(
                        ("grid_mean_ratio_lo", "grid_mean_ratio_hi"),
                        ratio_interval(g.loc[off, "perturbation"], g.loc[off, "p_de"], g.loc[off, "label"]),
                        strict=True,
                    )
                ),
                "grid_excess_de_at_10": float((unfloored["label"] - unfloored["p_prior"]).mean()),
                "grid_excess_de_at_10_listed": float((floored["label"] - floored["p_prior"]).mean())
                if len(floored)
                else float("nan"),
                "grid_listed_per_perturbation": len(floored) / max(len(per), 1),
                "grid_precision_at_10": float(unfloored["label"].mean()),
                "grid_de_calls_per_perturbation": len(called) / max(len(per), 1),
                # past the floor on the line's own evidence (listed) or without it (left out of lists)
                "grid_above_floor_with_evidence_de_rate": float(lifted.loc[has_ev, "label"].mean())
                if has_ev.any()
                else float("nan"),
                "grid_above_floor_without_evidence": int((~has_ev).sum()),
                "grid_above_floor_without_evidence_de_rate": float(lifted.loc[~has_ev, "label"].mean())
                if (~has_ev).any()
                else float("nan"),
                "grid_de_call_precision": float(called["label"].mean()) if len(called) else float("nan"),
            }
        )
    return pd.DataFrame(rows).set_index("method")


def asking_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """Per line and split: each bin's asking factor (:func:`coreperturb.data._design.asking_factors`: how often
    a gene is asked as a not-DE gene per chance, relative to the mean gene, on the whole-list perturbations),
    genes binned by their DE listings per training perturbation (:data:`ASKING_BINS`, upper quantiles). The
    inverse-probability estimate over the genome with ``1 / s_p`` alone assumes every factor is 1."""
    rows = []
    for line, f in frame.loc[frame["task"] == "de"].groupby("cell_line", observed=True):
        train = f.loc[f["split"] == "train"]
        rate = listing_rate(train)
        bins = np.searchsorted(np.asarray(ASKING_BINS), rate.rank(pct=True).to_numpy(), side="left")
        for split in ("train", "test"):
            t = f.loc[f["split"] == split]
            n_de = t.groupby("perturbation", observed=True)["label"].sum()
            whole = pd.Index(n_de.index[n_de.to_numpy() < PERTURBQA_CUT_FROM].astype(str))
            factor = asking_factors(t, rate, whole).reindex(rate.index).to_numpy()
            by_bin = pd.Series(factor).groupby(bins).first()
            rows.append(
                {"cell_line": line, "split": split, "whole-list perturbations": len(whole)}
                | {f"<= q{ASKING_BINS[b]:g}": v for b, v in by_bin.items()}
            )
    out = pd.DataFrame(rows).set_index(["cell_line", "split"])
    bins = sorted((c for c in out.columns if c.startswith("<=")), key=lambda c: float(c[4:]))
    return out[["whole-list perturbations", *bins]]


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--seed", type=int, default=0, help="seed of the fit and of the perturbation sample")
    ap.add_argument(
        "--max-perturbations", type=int, default=150, help="whole-list test perturbations queried"
    )
    ap.add_argument("--out", type=Path, default=None, help="CSV of every figure")
    ap.add_argument(
        "--dataset",
        choices=("perturbqa", "lincs"),
        default="perturbqa",
        help="lincs: the LINCS drugs, beside the potency-only baseline knn_retrieval",
    )
    ap.add_argument(
        "--together", action="store_true", help="one model of every line (blended), not one per line"
    )
    ap.add_argument(
        "--asking-rates",
        action="store_true",
        help="only print how often genes are asked as not-DE genes, by bin of their DE rate (no fit)",
    )
    args = ap.parse_args()
    start(args, args.dataset)
    if args.asking_rates:
        table = load_perturbqa(args.shared / "perturbqa", list(args.cell_lines), ["de"])
        print(asking_rates(table.frame).to_string(float_format=lambda v: f"{v:.2f}", na_rep="·"))
        return
    kg = build_kg(args.shared / "kg")
    tables = []
    methods = ["gene_frequency", "core_voting"] + (["knn_retrieval"] if args.dataset == "lincs" else [])
    lines = args.cell_lines if args.dataset == "perturbqa" else ["lincs"]
    fitted: dict[str, tuple] = {}
    calls: list[pd.DataFrame] = []
    for line in lines:
        if args.dataset == "lincs":
            table, _ = load_lincs(args.shared / "lincs", seed=args.seed)
            line = table.cell_lines[0]
        elif args.together:
            table = load_perturbqa(args.shared / "perturbqa", list(lines), ["de", "dir"])
        else:
            table = load_perturbqa(args.shared / "perturbqa", [line], ["de", "dir"])
        if "all" not in fitted or not args.together:
            config = FitConfig(methods=tuple(methods), seed=args.seed, dataset=args.dataset)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                models = fit(table, kg, config)
            test_all = table.frame.loc[table.frame["split"] == "test"]
            fitted["all"] = (models, test_all, predict(models, test_all))
        models, test_all, preds_all = fitted["all"]
        test = test_all.loc[test_all["cell_line"] == line]
        preds = preds_all.loc[preds_all["cell_line"] == line]
        m = evaluate_predictions(preds, models.thresholds, models=models)
        m = m.loc[(m["task"] == "de") & m["metric"].isin(KEEP)].pivot(
            index="method", columns="metric", values="value"
        )
        grid = genome_query(models, test, line, args.max_perturbations, args.seed, methods)
        m = m.join(grid_figures(grid))
        calls.append(grid.loc[grid["call"] == "DE"].assign(cell_line=line))
        m.insert(0, "cell_line", line)
        print(m.T.to_string(float_format=lambda v: f"{v:.4g}"), flush=True)
        tables.append(m.reset_index())
    out = pd.concat(tables, ignore_index=True)
    print(out.groupby("method").mean(numeric_only=True).T.to_string(float_format=lambda v: f"{v:.4g}"))
    if args.out is not None:
        write_frame(out, args.out)
        # every DE call of the genome-wide queries, labelled: which pairs the calls name
        write_frame(pd.concat(calls, ignore_index=True), args.out.with_suffix(".de_calls.csv"))


if __name__ == "__main__":
    main()
