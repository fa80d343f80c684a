"""Can perturbation-level context lift excess DE@10? A check on TRAINING perturbations only.

Usage:
    python benchmarks/specificity_features.py [--shared ../shared/data] [--cell-lines k562,rpe1,hepg2,jurkat]
                                              [--folds 4] [--cache DIR]

For each line, the training perturbations are split into ``--folds`` groups (as ``benchmarks/inner_cv.py``);
CORE-Voting is fitted on the other groups and gives, for every validation pair, its calibrated ``p_de``, its
evidence features, and three kinds of perturbation-level context computed over a FIXED reference gene set
(every readout gene of the fold's pool, so that a pair's context never depends on which other pairs were
asked): the quantile of each feature among the perturbation's values over the reference genes, and their
mean and standard deviation. A stacked combiner (the default boosting settings) is then trained on the
validation rows of the other folds and scored on the held-out fold, with and without the context.

Printed per line: excess DE@10 (ranking by ``p - p_prior``) and macro per-gene AUROC of

- ``p_de (default)``: CORE-Voting as shipped;
- ``stacked``: the stacked combiner on the evidence features alone (the reference for the context);
- ``+ reference quantiles`` / ``+ perturbation mean`` / ``+ mean and sd``: with the context;
- ``+ ranks within the asked genes (leaks)``: ranks of each feature among the genes asked for the same
  perturbation. Not a candidate: PerturbQA asks each perturbation about its DE genes and a sample of the
  others, so which genes are asked carries the labels. It is printed to show the size of that leak.

``--cache DIR`` keeps the fold tables (``DIR/<line>.parquet``) between runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from _common import cached_frame, parser, perturbqa_config, start, training_folds
from coreperturb._pipeline import resolve_inputs
from coreperturb._util import positions
from coreperturb.evaluation._metrics import excess_de_at, macro_per_gene_auroc
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.predictors._core_voting import CoreVoting
from coreperturb.predictors._effect import gene_prior


def _context(model: CoreVoting, val: pd.DataFrame, chunk: int = 40) -> pd.DataFrame:
    """Quantile (``q_``), mean (``m_``) and sd (``s_``) of each feature of ``val``'s pairs among their
    perturbation's values over every readout gene of the model's pool."""
    prepared = model.prepared_pool()
    pool = prepared.pool
    perts = sorted(pd.unique(val["perturbation"].astype(str)))
    n_genes = len(pool.genes)
    parts = []
    for lo in range(0, len(perts), chunk):
        batch = perts[lo : lo + chunk]
        sims = model.similarities(batch, pool, prepared)
        qi = np.repeat(positions(sims.queries, batch), n_genes)
        gi = np.tile(np.arange(n_genes), len(batch))
        names, x, _ = model._assemble(None, qi, gi, sims, prepared)
        grid = x.reshape(len(batch), n_genes, len(names))
        rows = val[val["perturbation"].isin(batch)]
        pi = positions(pd.Index(batch), rows["perturbation"].astype(str))
        gj = positions(pool.genes, rows["gene"].astype(str))
        known = gj >= 0
        q = np.full((len(rows), len(names)), np.nan)
        ordered = np.sort(grid, axis=1)
        for j in range(len(names)):
            values = grid[pi[known], gj[known], j]
            q[known, j] = [
                np.searchsorted(ordered[a, :, j], v) / n_genes for a, v in zip(pi[known], values, strict=True)
            ]
        parts.append(
            pd.concat(
                [
                    pd.DataFrame(q, columns=[f"q_{n}" for n in names], index=rows.index),
                    pd.DataFrame(grid.mean(axis=1)[pi], columns=[f"m_{n}" for n in names], index=rows.index),
                    pd.DataFrame(grid.std(axis=1)[pi], columns=[f"s_{n}" for n in names], index=rows.index),
                ],
                axis=1,
            )
        )
    return pd.concat(parts).loc[val.index]


def fold_table(frame: pd.DataFrame, kg: KnowledgeGraph, folds: int, seed: int, line: str) -> pd.DataFrame:
    """Validation rows of every fold of ``line``'s training perturbations: label, p_de, prior (NaN for a
    gene the inner folds never saw), evidence features (``f_``) and context."""
    parts = []
    for f, inner, val in training_folds(frame, line, folds, seed):
        t = time.perf_counter()
        model = CoreVoting(kg).fit(inner)
        feats = model.features(val).add_prefix("f_")
        prior = gene_prior(inner, val["gene"].to_numpy())
        parts.append(
            pd.concat(
                [
                    val[["perturbation", "gene", "label"]].assign(
                        fold=f,
                        p_de=model.predict_proba(val)[:, 1],
                        p_prior=prior,
                    ),
                    feats,
                    _context(model, val),
                ],
                axis=1,
            )
        )
        print(f"{line} fold {f}: {time.perf_counter() - t:.0f}s", flush=True)
    return pd.concat(parts, ignore_index=True)


def _stacked(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Held-out-fold probabilities of the default boosting combiner trained on the other folds' rows."""
    out = np.zeros(len(y))
    for f in np.unique(fold):
        tr = fold != f
        model = HistGradientBoostingClassifier(
            max_iter=300,
            learning_rate=0.05,
            max_leaf_nodes=15,
            min_samples_leaf=200,
            l2_regularization=1.0,
            random_state=0,
        )
        out[~tr] = model.fit(x[tr], y[tr]).predict_proba(x[~tr])[:, 1]
    return out


def score_line(d: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """(excess DE@10, macro per-gene AUROC) of every candidate, averaged over the folds."""
    y, prior, fold = d["label"].to_numpy(), d["p_prior"].to_numpy(), d["fold"].to_numpy()
    pert, gene = d["perturbation"].to_numpy(), d["gene"].to_numpy()

    def cols(prefix: str) -> np.ndarray:
        return d[[c for c in d.columns if c.startswith(prefix)]].to_numpy()

    f, q, m, s = cols("f_"), cols("q_"), cols("m_"), cols("s_")
    f_names = [c for c in d.columns if c.startswith("f_")]
    ranks = d.groupby("perturbation")[f_names].rank(pct=True).to_numpy()
    scores = {
        "p_de (default)": d["p_de"].to_numpy(),
        "stacked": _stacked(f, y, fold),
        "+ reference quantiles": _stacked(np.hstack([f, q]), y, fold),
        "+ perturbation mean": _stacked(np.hstack([f, m]), y, fold),
        "+ mean and sd": _stacked(np.hstack([f, m, s]), y, fold),
        "+ ranks within the asked genes (leaks)": _stacked(np.hstack([f, ranks]), y, fold),
    }
    out = {}
    for name, p in scores.items():
        ex, au = [], []
        for k in np.unique(fold):
            i = fold == k
            ex.append(excess_de_at(y[i], prior[i], p[i] - prior[i], pert[i], 10))
            au.append(macro_per_gene_auroc(y[i], p[i], gene[i], pert[i], 0.5))
        out[name] = (float(np.mean(ex)), float(np.mean(au)))
    return out


def main() -> None:
    ap = parser(__doc__, folds=True)
    ap.add_argument("--cache", type=Path, default=None, help="a folder that keeps the fold tables")
    args = ap.parse_args()
    start(args)
    table, kg = resolve_inputs(perturbqa_config(args, tasks=("de",)), Path("."))
    rows = []
    for line in args.cell_lines:
        cached = args.cache / f"{line}.parquet" if args.cache is not None else None
        d = cached_frame(cached, lambda line=line: fold_table(table.frame, kg, args.folds, args.seed, line))
        for name, (ex, au) in score_line(d).items():
            rows.append({"cell_line": line, "candidate": name, "excess_de_at_10": ex, "auroc": au})
            print(f"{line} {name}: excess DE@10 {ex:.4f}, per-gene AUROC {au:.4f}", flush=True)
    res = pd.DataFrame(rows)
    names = list(dict.fromkeys(res["candidate"]))
    for metric in ("excess_de_at_10", "auroc"):
        tab = res.pivot_table(index="candidate", columns="cell_line", values=metric).reindex(names)
        tab["mean"] = tab.mean(axis=1)
        print(
            f"\n{metric}, validation perturbations of the training split ({len(args.cell_lines)} lines x {args.folds} folds)"
        )
        print(tab.round(4).to_string())


if __name__ == "__main__":
    main()
