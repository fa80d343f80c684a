"""Would a line's own model do better mixed with the answer for a line with no screen? (training pairs only)

    python benchmarks/pilot_blend.py [--shared ../shared/data] [--held-out hepg2[,k562,...]]
                                     [--pilots 25,50,100,200,400,0.75] [--draws 3] [--out FILE.csv]

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
library's pool of the probabilities (``linear``) it prints what pooling the log-odds would give (``logit``,
``expit(w logit(own) + (1 - w) logit(no_screen))``) and, per pool, the mean excess DE@10 of the blends.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from _common import parser, start, write_frame
from coreperturb import build_kg, fit, load_perturbqa, predict
from coreperturb._util import logit
from coreperturb.data._schema import QueryTable
from coreperturb.evaluation._metrics import excess_de_at, grouped_auroc
from coreperturb.stages import FitConfig

WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
POOLS = {
    "linear": lambda a, b, w: w * a + (1 - w) * b,
    "logit": lambda a, b, w: expit(w * logit(a) + (1 - w) * logit(b)),
}
"""How the own and the other lines' answers are pooled: their probabilities (linear) or their log-odds
(logarithmic opinion pool)."""


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--held-out", default="hepg2", help="the lines piloted, comma-separated")
    ap.add_argument("--pilots", default="25,50,100,200,400", help="pilot sizes N (below 1: a share)")
    ap.add_argument("--draws", type=int, default=3, help="random pilots per N")
    ap.add_argument("--out", type=Path, default=None, help="CSV of every (line, N, draw, scale, w) AUROC")
    ap.add_argument("--choose", type=Path, default=None, help="only choose K from an earlier --out CSV")
    args = ap.parse_args()
    if args.choose is not None:
        choose_weight(pd.read_csv(args.choose))
        return
    start(args)
    warnings.simplefilter("ignore")
    kg = build_kg(args.shared / "kg")
    table = load_perturbqa(args.shared / "perturbqa", args.cell_lines, ["de"])
    frame = table.frame.astype({"cell_line": str, "perturbation": str, "gene": str})
    frame = frame.loc[frame["split"] == "train"]
    records = []
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
                b = predict(none, val.assign(cell_line=f"{line}_unscreened"))
                y, genes = val["label"].to_numpy(), val["gene"].to_numpy()
                perts_v, prior = val["perturbation"].to_numpy(), a["p_prior_sample"].to_numpy()
                for scale in ("score", "score_sample"):
                    sa, sb = a[scale].to_numpy(), b[scale].to_numpy()
                    sb = np.where(np.isfinite(sb), sb, sa)
                    for pool, mix in POOLS.items():
                        res = {w: mix(sa, sb, w) for w in WEIGHTS}
                        records += [
                            {
                                "line": line,
                                "n": n,
                                "draw": draw,
                                "scale": scale,
                                "pool": pool,
                                "w": w,
                                "auroc": grouped_auroc(y, v, genes)[0],
                                "excess": excess_de_at(y, prior, v - prior, perts_v)
                                if scale == "score_sample"
                                else np.nan,
                            }
                            for w, v in res.items()
                        ]
                        print(
                            f"{line} N={n} draw {draw} {scale} {pool}: "
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
    (K = 0) and the worst gain, and the mean excess DE@10; per pool, the smallest K within :data:`TIE` of its
    largest mean gain (the least change to full screens): the linear pool's is the library's default."""
    rows = records.loc[records["scale"] == "score_sample"]
    if "pool" not in rows.columns:  # a CSV of an earlier release: linear pools only
        rows = rows.assign(pool="linear", excess=np.nan)
    out = []
    for pool, k in [(p, k) for p in sorted(rows["pool"].unique()) for k in CANDIDATES]:
        gains, excess = [], []
        for (_, n, _), cell in rows.loc[rows["pool"] == pool].groupby(["line", "n", "draw"]):
            cell = cell.sort_values("w")
            w = n / (n + k) if k > 0 else 1.0
            at = float(np.interp(w, cell["w"], cell["auroc"]))
            gains.append(at - float(cell.loc[cell["w"] == 1.0, "auroc"].iloc[0]))
            excess.append(float(np.interp(w, cell["w"], cell["excess"])))
        out.append(
            {
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
    for pool, t in table.groupby("pool"):
        best = t["mean_gain"].max()
        near = t.loc[t["mean_gain"] >= best - TIE]
        print(
            f"{pool} pool: largest mean gain {best:+.4f}; the smallest K within {TIE} of it (the least change to "
            f"full screens): K = {near['K'].min():g}"
        )
    print(
        "the library pools the probabilities (linear: FitConfig.other_lines_weight is its K); the logit rows "
        "say what pooling the log-odds would give (a measured pair enters it as a certainty, 1 - 1e-6)"
    )


if __name__ == "__main__":
    main()
