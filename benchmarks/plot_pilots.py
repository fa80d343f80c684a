"""The pilot learning curve of a held-out line as a figure, from ``benchmarks/new_line.py --out`` tables.

    python benchmarks/plot_pilots.py --blended A.csv[,B.csv] [--own C.csv] [--line hepg2]
                                     [--out docs/img/pilot_curve.png]

Per pilot size N: the mean per-gene AUROC of the random draws (bars: their standard deviation) of the blended
answer (``--blended``: the default fit) and of the line's own model alone (``--own``: ``new_line.py
--own-model``), with the answer for a line with no screen (N = 0) and the copy baseline as horizontal lines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def _read(paths: str) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in paths.split(",") if p], ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blended", required=True, help="new_line.py --out CSVs of the default fit")
    ap.add_argument("--own", default="", help="new_line.py --own-model --out CSVs")
    ap.add_argument("--line", default="hepg2")
    ap.add_argument("--out", type=Path, default=Path("docs/img/pilot_curve.png"))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    frames = {"blended with the other lines (default)": _read(args.blended)}
    if args.own:
        frames["own model alone (--own-model)"] = _read(args.own)
    flat: dict[str, float] = {}
    for (label, frame), style in zip(frames.items(), ("o-", "s--"), strict=False):
        rows = frame.loc[(frame["held_out"] == args.line) & (frame["method"] == "core_voting")]
        for name, value in (("no screen", 0), ("copy", None)):
            pick = frame.loc[frame["held_out"] == args.line]
            pick = pick.loc[pick["method"] == "copy"] if value is None else rows.loc[rows["n"] == value]
            if len(pick):
                flat[name] = float(pick["per_gene_auroc"].mean())
        curve = rows.loc[rows["n"] > 0].groupby("n")["per_gene_auroc"].agg(["mean", "std"]).fillna(0.0)
        ax.errorbar(curve.index, curve["mean"], yerr=curve["std"], fmt=style, capsize=3, label=label)
    for (name, value), color in zip(flat.items(), ("grey", "lightgrey"), strict=False):
        ax.axhline(value, color=color, linestyle=":", label=f"{name} ({value:.3f})")
    ax.set_xscale("log")
    ax.set_xlabel(f"perturbations screened in {args.line} (random pilots)")
    ax.set_ylabel("per-gene AUROC, test split")
    ax.set_title(f"{args.line} as a new line beside three screened lines")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
