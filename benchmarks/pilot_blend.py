"""Would a pilot line's own model do better mixed with the answer for a line with no screen? (training pairs only)

    python benchmarks/pilot_blend.py [--shared ../shared/data] [--held-out hepg2] [--pilots 25,50,100,200,400]
                                     [--draws 3]

The other PerturbQA lines are fitted with every row they have; for each pilot size N and draw, N of the held-out
line's TRAINING perturbations become its own screen (only its model is fitted, the other lines as evidence) and
the rest of its training pairs are scored (its test split is never read) by ``w * own + (1 - w) * no_screen`` for
w in 0, 0.25, 0.5, 0.75, 1, where ``no_screen`` is the library's answer for a line the model holds no screen of.
Prints the per-gene AUROC of every w.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from _common import parser, start
from coreperturb import build_kg, fit, load_perturbqa, predict
from coreperturb.data._schema import QueryTable
from coreperturb.evaluation._metrics import grouped_auroc
from coreperturb.stages import FitConfig

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--held-out", default="hepg2", help="the line piloted")
    ap.add_argument("--pilots", default="25,50,100,200,400", help="pilot sizes N")
    ap.add_argument("--draws", type=int, default=3, help="random pilots per N")
    args = ap.parse_args()
    start(args)
    warnings.simplefilter("ignore")
    line = args.held_out
    kg = build_kg(args.shared / "kg")
    table = load_perturbqa(args.shared / "perturbqa", args.cell_lines, ["de"])
    frame = table.frame.astype({"cell_line": str, "perturbation": str, "gene": str})
    others = frame.loc[frame["cell_line"] != line].assign(split="train")
    own = frame.loc[(frame["cell_line"] == line) & (frame["split"] == "train")]
    perts = np.sort(own["perturbation"].unique())
    none = fit(QueryTable(others, require_test=False, design=table.design), kg, FitConfig(seed=0))
    for n in map(int, args.pilots.split(",")):
        for draw in range(args.draws):
            pilot = np.random.default_rng(7 + 100 * draw + n).choice(perts, size=n, replace=False)
            val = own.loc[~own["perturbation"].isin(pilot)].reset_index(drop=True)
            mine = own.loc[own["perturbation"].isin(pilot)]
            fitted = QueryTable(pd.concat([others, mine]), require_test=False, design=table.design)
            piloted = fit(fitted, kg, FitConfig(seed=0, fit_lines=(line,)))
            a = predict(piloted, val)["score"].to_numpy()
            b = predict(none, val.assign(cell_line=f"{line}_unscreened"))["score"].to_numpy()
            y, genes = val["label"].to_numpy(), val["gene"].to_numpy()
            res = {w: grouped_auroc(y, w * a + (1 - w) * b, genes)[0] for w in WEIGHTS}
            print(
                f"{line} N={n} draw {draw}: " + "  ".join(f"w={w}: {v:.4f}" for w, v in res.items()),
                flush=True,
            )


if __name__ == "__main__":
    main()
