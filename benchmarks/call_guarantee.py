"""Choose how the calls' conformal threshold is taken, on TRAINING perturbations only.

    coreperturb fit --data-dir ../shared/data/perturbqa --kg-dir ../shared/data/kg \\
        --cell-lines k562,rpe1,hepg2,jurkat --tasks de,dir --out model
    python benchmarks/call_guarantee.py --model-dir model [--repeats 20] [--method core_voting]

A fitted model's calibration rows are training perturbations its scoring model never saw (the calls are
calibrated on them). Per line and task they are split in half by perturbation, ``--repeats`` times: one half
calibrates :class:`~coreperturb.predictors._conformal.MondrianConformal` with each rule, the other half is
called at the model's confidence and scored (DE rows on the genome scale, each weighted by the genome pairs it
stands for, as the calls are calibrated). Rules: the plain rank ``ceil((n + 1)(1 - alpha))`` (coverage at
least the confidence on average over calibration draws) and the training-conditional rank with ``delta`` 0.5,
0.2, 0.1, 0.05 (at least the confidence with probability ``1 - delta``). Printed per line, task and rule
(means over the repeats; :func:`~coreperturb.evaluation._calls.call_metrics`, weighted): coverage, the
worst prior decile's coverage, the share of uncertain calls, and the coverage among the positive (DE, up)
rows; per rule, the share of halvings whose worst decile is below 0.87. Halves calibrate on half the rows a
fitted model has, so every rule's spread is larger here than in a fitted model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from _common import parser
from coreperturb import load_model
from coreperturb.evaluation._calls import call_metrics
from coreperturb.predictors._conformal import CALL_LABELS, MondrianConformal

RULES: dict[str, float | None] = {
    "plain": None,
    "delta 0.5": 0.5,
    "delta 0.2": 0.2,
    "delta 0.1": 0.1,
    "delta 0.05": 0.05,
}


def figures(
    y: np.ndarray, calls: np.ndarray, prior: np.ndarray, w: np.ndarray, task: str
) -> dict[str, float]:
    """:func:`call_metrics` of the called half, each row weighted by the genome pairs it stands for."""
    m = call_metrics(y, calls, prior, CALL_LABELS[task][0], weights=w)
    return {
        "coverage": m["coverage"],
        "worst_decile": m["coverage_min_prior_decile"],
        "uncertain": m["uncertain_rate"],
        "positive_coverage": m["coverage_positive_rows"],
    }


def main() -> None:
    ap = parser(__doc__, cell_lines=False)
    ap.add_argument("--model-dir", type=Path, required=True, help="a model fitted by `coreperturb fit`")
    ap.add_argument("--repeats", type=int, default=20, help="random halvings per line and task")
    ap.add_argument("--method", default="core_voting")
    args = ap.parse_args()
    models = load_model(args.model_dir)
    cal = models.calibration
    assert cal is not None, "the model has no calibration rows"
    rng = np.random.default_rng(0)
    rows = []
    for (line, task), part in cal.loc[cal["method"] == args.method].groupby(["cell_line", "task"]):
        arrays = models._calibration_arrays(str(line), str(task), args.method)
        scores, labels, prior, genes, weights = arrays
        w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
        perts = part["perturbation"].to_numpy().astype(str)
        unique = np.unique(perts)
        for rep in range(args.repeats):
            half = np.isin(perts, rng.choice(unique, len(unique) // 2, replace=False))
            a, b = half & (w > 0), ~half & (w > 0)
            for rule, delta in RULES.items():
                conf = MondrianConformal.fit(
                    scores[a], labels[a], prior[a], genes[a], weights=None if weights is None else w[a]
                )
                calls = conf.calls(scores[b], prior[b], genes[b], str(task), models.confidence, delta=delta)
                got = figures(labels[b], np.asarray(calls).astype(str), prior[b], w[b], str(task))
                rows.append({"line": line, "task": task, "rule": rule, "repeat": rep, **got})
    out = pd.DataFrame(rows)
    cols = ["coverage", "worst_decile", "uncertain", "positive_coverage"]
    order = {name: i for i, name in enumerate(RULES)}
    for task, t in out.groupby("task"):
        print(f"\n{task}: means over {args.repeats} halvings (DE: over the genome)")
        table = t.groupby(["line", "rule"])[cols].mean().reset_index()
        table = table.sort_values(["line", "rule"], key=lambda c: c.map(order) if c.name == "rule" else c)
        print(table.round(3).to_string(index=False))
        overall = t.groupby("rule")[cols].mean().sort_index(key=lambda c: c.map(order))
        overall["worst_below_0.87_share"] = t.assign(b=t["worst_decile"] < 0.87).groupby("rule")["b"].mean()
        print(overall.round(3).to_string())


if __name__ == "__main__":
    main()
