"""Would a line's own model do better mixed with the answer for a line with no screen? (training pairs only)

    python benchmarks/pilot_blend.py [--shared ../shared/data] [--held-out hepg2[,k562,...]]
                                     [--pilots 25,50,100,200,400,0.75] [--draws 3] [--task de|dir]
                                     [--readings labels,rates,gene_rates] [--means probabilities,log_odds]
                                     [--out FILE.csv]

For each line named by ``--held-out``, the other PerturbQA lines are fitted on their TRAINING rows (their test
split is never read; nor is the held-out line's). For each pilot size N (a number below 1: that share of the
line's training perturbations, e.g. 0.75 for a fold of a full screen) and draw, N of the held-out line's
training perturbations become its own screen (only its model is fitted, the other lines as evidence; its own
answer, unblended) and the rest of its training pairs are scored by ``w * own + (1 - w) * no_screen``, where
``no_screen`` is the library's answer for a line the model holds no screen of. Blends are scored on the genome
scale (``score``) and on the table's (``score_sample``, where the library blends). Prints the per-gene AUROC of
every w, writes them (with N) to ``--out``, and chooses the weight K of ``w = N / (N + K)``
(``FitConfig.other_lines_weight``): the smallest K within 0.001 of the largest mean gain over the line's own
answer, over every line, size and draw (``--choose FILE`` repeats the choice from a written CSV). Beside the
pool of the probabilities (``linear``) it prints the pool of the log-odds (``logit``, ``expit(w logit(own) + (1 - w)
logit(no_screen))``), each with another line's measurement of a pair read as its label or as the rate the lines'
shared pairs give it, or given the gene's rate in the line answered (``FitConfig.measured_pairs``: labels,
rates, gene_rates), the other lines' answers averaged as probabilities or as log-odds
(``--means``; ``FitConfig.no_screen_mean`` of the no-screen answer, which stands for the other lines' answer of a
blend, ``FitConfig.other_lines_mean``), and per pool the mean excess DE@10 of the blends; the library's reading
and pool are the ones with the largest excess within 0.001 of the best gain, measurements read as rates (either
kind), the other lines' probabilities averaged; their log-odds averaged instead only where that raises both the
mean gain and the mean excess. The answer for the held-out line, which has no screen in that model, reads a
gene's rate as the other lines' mean.
``--task dir`` pilots the direction task (AUROC only).
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from _common import parser, start, write_frame
from coreperturb import build_kg, fit, load_perturbqa, predict
from coreperturb._defaults import OTHER_LINES_WEIGHT
from coreperturb._util import logit
from coreperturb.data._schema import QueryTable
from coreperturb.evaluation._metrics import excess_de_at, grouped_auroc
from coreperturb.stages import FitConfig, FittedModels

WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
POOLS = {
    "linear": lambda a, b, w: w * a + (1 - w) * b,
    "logit": lambda a, b, w: expit(w * logit(a) + (1 - w) * logit(b)),
}
"""How the own and the other lines' answers are pooled: their probabilities (linear) or their log-odds
(logarithmic opinion pool)."""
READINGS = ("labels", "rates", "gene_rates")
"""How the other lines' answer reads a pair another line measured (``FitConfig.measured_pairs``)."""


def read_as(models: FittedModels, reading: str, mean: str = "probabilities") -> FittedModels:
    """``models`` reading another line's measurement of a pair as ``reading`` and averaging the lines as
    ``mean`` (the no-screen answer stands for the other lines' answer of a blend here)."""
    config = dataclasses.replace(models.config, measured_pairs=reading, no_screen_mean=mean)
    return dataclasses.replace(models, config=config)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--held-out", default="hepg2", help="the lines piloted, comma-separated")
    ap.add_argument("--pilots", default="25,50,100,200,400", help="pilot sizes N (below 1: a share)")
    ap.add_argument("--draws", type=int, default=3, help="random pilots per N")
    ap.add_argument("--task", default="de", choices=("de", "dir"), help="the task piloted")
    ap.add_argument("--readings", default=",".join(READINGS), help="measured_pairs readings compared")
    ap.add_argument(
        "--means", default="probabilities", help="other lines' means compared (probabilities, log_odds)"
    )
    ap.add_argument("--out", type=Path, default=None, help="CSV of every (line, N, draw, scale, w) AUROC")
    ap.add_argument("--choose", type=Path, default=None, help="only choose K from an earlier --out CSV")
    args = ap.parse_args()
    if args.choose is not None:
        choose_weight(pd.read_csv(args.choose))
        return
    start(args)
    warnings.simplefilter("ignore")
    kg = build_kg(args.shared / "kg")
    table = load_perturbqa(args.shared / "perturbqa", args.cell_lines, [args.task])
    frame = table.frame.astype({"cell_line": str, "perturbation": str, "gene": str})
    frame = frame.loc[frame["split"] == "train"]
    records = []
    variants = tuple(itertools.product(args.readings.split(","), args.means.split(",")))
    combos = tuple(itertools.product(variants, POOLS))
    for line in args.held_out.split(","):
        others = frame.loc[frame["cell_line"] != line]
        own = frame.loc[frame["cell_line"] == line]
        perts = np.sort(own["perturbation"].unique())
        none = fit(QueryTable(others, require_test=False, design=table.design), kg, FitConfig(seed=0))
        for size in args.pilots.split(","):
            n = round(float(size) * len(perts)) if float(size) < 1 else int(size)
            for draw in range(args.draws):
                pilot = np.random.default_rng(7 + 100 * draw + n).choice(perts, size=n, replace=False)
                val = own.loc[~own["perturbation"].isin(pilot)].reset_index(drop=True)
                mine = own.loc[own["perturbation"].isin(pilot)]
                fitted = QueryTable(pd.concat([others, mine]), require_test=False, design=table.design)
                piloted = fit(fitted, kg, FitConfig(seed=0, fit_lines=(line,)))
                a = predict(piloted, val)
                y, genes = val["label"].to_numpy(), val["gene"].to_numpy()
                perts_v, prior = val["perturbation"].to_numpy(), a["p_prior_sample"].to_numpy()
                unscreened = val.assign(cell_line=f"{line}_unscreened")
                bs = {v: predict(read_as(none, *v), unscreened) for v in variants}
                for ((reading, mean), pool), scale in itertools.product(combos, ("score", "score_sample")):
                    b = bs[reading, mean]
                    sa, sb = a[scale].to_numpy(), b[scale].to_numpy()
                    sb = np.where(np.isfinite(sb), sb, sa)
                    mix = POOLS[pool]
                    res = {w: mix(sa, sb, w) for w in WEIGHTS}
                    records += [
                        {
                            "line": line,
                            "n": n,
                            "draw": draw,
                            "scale": scale,
                            "measured": reading,
                            "mean": mean,
                            "pool": pool,
                            "w": w,
                            "auroc": grouped_auroc(y, v, genes)[0],
                            "excess": excess_de_at(y, prior, v - prior, perts_v)
                            if scale == "score_sample" and args.task == "de"
                            else np.nan,
                        }
                        for w, v in res.items()
                    ]
                    print(
                        f"{line} N={n} draw {draw} {scale} {reading}/{mean}/{pool}: "
                        + "  ".join(f"w={r['w']}: {r['auroc']:.4f}" for r in records[-len(res) :]),
                        flush=True,
                    )
                if args.out is not None:
                    write_frame(pd.DataFrame(records), args.out)
    choose_weight(pd.DataFrame(records))


TIE = 0.001
"""Mean gains this close to the largest count as a tie, which the smallest K wins."""
CANDIDATES = (0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 600.0)


def choose_weight(records: pd.DataFrame) -> None:
    """The other lines' weight K of ``w = N / (N + K)``: per candidate, the AUROC of every (line, N, draw) at
    that w (linear between the grid's weights, table scale), its mean gain over the line's own answer alone
    (K = 0) and the worst gain, and the mean excess DE@10; per reading and pool, the smallest K within
    :data:`TIE` of its largest mean gain (the least change to full screens). The library's reading and pool:
    among those choices, the largest mean excess DE@10 whose mean gain is within :data:`TIE` of the best."""
    rows = records.loc[records["scale"] == "score_sample"]
    if "pool" not in rows.columns:  # a CSV of an earlier release: linear pools only
        rows = rows.assign(pool="linear", excess=np.nan)
    if "measured" not in rows.columns:  # ... and measurements read as labels
        rows = rows.assign(measured="labels")
    if "mean" not in rows.columns:  # ... and the other lines' probabilities averaged
        rows = rows.assign(mean="probabilities")
    out = []
    combos = sorted(set(zip(rows["measured"], rows["mean"], rows["pool"], strict=True)))
    for (reading, mean, pool), k in itertools.product(combos, CANDIDATES):
        gains, excess = [], []
        cells = rows.loc[(rows["pool"] == pool) & (rows["measured"] == reading) & (rows["mean"] == mean)]
        for (_, n, _), cell in cells.groupby(["line", "n", "draw"]):
            cell = cell.sort_values("w")
            w = n / (n + k) if k > 0 else 1.0
            at = float(np.interp(w, cell["w"], cell["auroc"]))
            gains.append(at - float(cell.loc[cell["w"] == 1.0, "auroc"].iloc[0]))
            excess.append(float(np.interp(w, cell["w"], cell["excess"])))
        out.append(
            {
                "measured": reading,
                "mean": mean,
                "pool": pool,
                "K": k,
                "mean_gain": np.mean(gains),
                "worst_gain": np.min(gains),
                "mean_excess_de_at_10": np.mean(excess),
                "cells": len(gains),
            }
        )
    table = pd.DataFrame(out)
    print(table.to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
    chosen = []
    for (reading, mean, pool), t in table.groupby(["measured", "mean", "pool"]):
        best = t["mean_gain"].max()
        near = t.loc[t["mean_gain"] >= best - TIE]
        pick = near.loc[near["K"] == near["K"].min()].iloc[0]
        chosen.append(pick)
        print(
            f"{reading}/{mean}/{pool}: largest mean gain {best:+.4f}; the smallest K within {TIE} of it (the least change "
            f"to full screens): K = {pick['K']:g}, excess DE@10 {pick['mean_excess_de_at_10']:.4f}"
        )
    picks = pd.DataFrame(chosen)
    # a measurement is read as a rate, pooled or given the gene's rate in the line answered (labels: the
    # special case q1 = 1, q0 = 0, which reads a pair another line measured as a certainty here); the reading
    # and the pool, the other lines' probabilities averaged: the largest excess DE@10 among those within TIE of
    # the best mean gain at the library's K
    at_k = table.loc[(table["measured"] != "labels") & (table["K"] == OTHER_LINES_WEIGHT)]
    rates = at_k.loc[at_k["mean"] == "probabilities"]
    if rates.empty:
        return
    near = rates.loc[rates["mean_gain"] >= rates["mean_gain"].max() - TIE]
    best = near.sort_values("mean_excess_de_at_10", ascending=False).iloc[0]
    # the other lines averaged on the log-odds scale instead: only where that raises both the mean gain and
    # the mean excess DE@10 (a gain bought with specificity is not taken)
    odds = at_k.loc[
        (at_k["mean"] == "log_odds") & (at_k["measured"] == best["measured"]) & (at_k["pool"] == best["pool"])
    ]
    mean = "probabilities"
    if not odds.empty:
        o = odds.iloc[0]
        better = (
            o["mean_gain"] > best["mean_gain"] and o["mean_excess_de_at_10"] > best["mean_excess_de_at_10"]
        )
        mean = "log_odds" if better else mean
        print(
            f"the other lines' log-odds averaged: gain {o['mean_gain']:+.4f}, excess {o['mean_excess_de_at_10']:.4f}"
            f" against {best['mean_gain']:+.4f}, {best['mean_excess_de_at_10']:.4f}"
        )
    print(
        f"at K = {OTHER_LINES_WEIGHT:g}, measurements read as rates, the reading and pool with the largest excess "
        f"DE@10 within {TIE} of the best mean gain: measured_pairs={best['measured']}, "
        f"other_lines_pool={'log_odds' if best['pool'] == 'logit' else 'probabilities'}"
        f" (gain {best['mean_gain']:+.4f}, excess {best['mean_excess_de_at_10']:.4f}); other_lines_mean={mean};"
        f" the best K per reading, mean and pool above: "
        f"{', '.join(f'{r.measured}/{r.mean}/{r.pool} {r.K:g}' for r in picks.itertuples())}"
    )


if __name__ == "__main__":
    main()
