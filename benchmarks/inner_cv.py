"""Choose CORE-Voting settings on TRAINING perturbations only: 4-fold inner cross-validation per cell line.

Usage:
    python benchmarks/inner_cv.py [--shared ../shared/data] [--cell-lines k562,rpe1,hepg2,jurkat] [--folds 4]
                                  [--compare combiners|transfer]

Test rows are dropped right after loading; they are never used. For each cell line, the training perturbations are split into
``--folds`` groups; each group in turn is the validation set, CORE-Voting is fitted on the remaining training
perturbations with each candidate combiner, and the macro per-gene AUROC on the validation group is recorded.
Prints every (line, fold) score, the mean per candidate, and the paired difference of every candidate against
the first one (mean, standard error over line × fold, number of wins).

``--compare combiners`` (default) compares CORE-Voting combiners; ``--compare transfer`` compares
``core_voting`` with ``core_voting_transfer``, which also gets the TRAINING rows of the other cell lines as
context (exactly what the benchmark passes it; the validation line's own rows are never context).

``--compare ranking`` chooses the default ranking and the floor of the lists (the same fold predictions, so
``--oof`` shares them with ``--compare effect``): every candidate ranking of the genes within each validation
perturbation is scored by excess DE@10 / @50 (Σ label − Σ prior over the top k, per gene listed; a ranking
from gene-level information alone scores about 0), with the prior-only rules (the prior, the prior below
0.2, rarity) as controls; then floors on ``p_de - p_prior`` are compared by what the lists they leave hold.

``--compare effect`` chooses the effect score (:mod:`coreperturb.predictors._effect`) and the default
ranking: CORE-Voting is fitted once per (line, fold), its validation predictions with their evidence counts
are kept (``--oof FILE`` caches them), and every candidate ranking of the genes within each validation
perturbation is scored by specific-hit precision@10 (and @50), with the gene priors taken from the fold's
own training rows. ``p_de`` and a random order (a constant key, ties broken in expectation) are printed
beside them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from _common import cached_frame, parser, perturbqa_config, start, surplus_floor, training_folds
from coreperturb._pipeline import BenchmarkConfig, resolve_inputs
from coreperturb.evaluation._metrics import macro_per_gene_auroc, ranking_metric
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.predictors._core_voting import CoreVoting, CoreVotingTransfer
from coreperturb.predictors._effect import EffectParams, effect_score, gene_prior
from coreperturb.stages._fitted import context_rows


def candidates(compare: str, kg: KnowledgeGraph) -> dict[str, CoreVoting]:
    """Unfitted models compared; the first is the reference."""
    if compare == "transfer":
        return {"core_voting": CoreVoting(kg), "core_voting_transfer": CoreVotingTransfer(kg)}
    old = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=100, random_state=0
    )
    return {
        "boosting (31 leaves, min leaf 100)": CoreVoting(kg, combiner=old),
        "boosting (default: 15 leaves, min leaf 200, l2 1)": CoreVoting(kg),
    }


def main() -> None:
    ap = parser(__doc__, folds=True)
    ap.add_argument("--compare", choices=("combiners", "transfer", "effect", "ranking"), default="combiners")
    ap.add_argument(
        "--oof", type=Path, default=None, help="--compare effect / ranking: cache of the fold predictions"
    )
    args = ap.parse_args()
    start(args)
    config = perturbqa_config(args, tasks=("de",))
    if args.compare == "effect":
        compare_effect(config, args.cell_lines, args.folds, args.seed, args.oof)
        return
    if args.compare == "ranking":
        compare_ranking(config, args.cell_lines, args.folds, args.seed, args.oof)
        return
    table, kg = resolve_inputs(config, Path("."))  # the table and KG exactly as the benchmark builds them
    rows = []
    t0 = time.perf_counter()
    for line in args.cell_lines:
        context = context_rows(table.frame, line, "de")
        for f, inner, val in training_folds(table.frame, line, args.folds, args.seed):
            for name, model in candidates(args.compare, kg).items():
                model.fit(inner, context=context if model.uses_context else None)
                p = model.predict_proba(val)[:, 1]
                y, genes_v = val["label"].to_numpy(), val["gene"].astype(str).to_numpy()
                score = macro_per_gene_auroc(y, p, genes_v, val["perturbation"].to_numpy(), 0.5)
                rows.append({"cell_line": line, "fold": f, "candidate": name, "auroc": score})
                print(f"{line} fold {f} {name}: {score:.4f}", flush=True)
    res = pd.DataFrame(rows)
    wide = res.pivot_table(index=["cell_line", "fold"], columns="candidate", values="auroc")
    names = list(candidates(args.compare, kg))
    print(f"\ninner-CV macro per-gene AUROC (train perturbations only; {time.perf_counter() - t0:.0f}s)")
    print(res.pivot_table(index="candidate", columns="cell_line", values="auroc").round(4).to_string())
    ref = wide[names[0]]
    for name in names:
        d = wide[name] - ref
        print(
            f"{name}: mean {wide[name].mean():.4f}  vs first: {d.mean():+.4f} "
            f"(se {d.std(ddof=1) / np.sqrt(len(d)):.4f}, wins {(d > 0).sum()}/{len(d)})"
        )


EFFECT_CANDIDATES: dict[str, EffectParams | None] = {
    "p_de": None,
    "random": None,
    "plain": EffectParams("plain", 0.0),
    **{f"weighted k={k:g}": EffectParams("weighted", k) for k in (1, 3, 10)},
    **{f"pseudo k={k:g}": EffectParams("pseudo", k) for k in (1, 3, 10)},
    **{f"ratio k={k:g}": EffectParams("ratio", k) for k in (0, 0.5, 1, 3)},
}


def fold_predictions(config: BenchmarkConfig, lines: list[str], folds: int, seed: int) -> pd.DataFrame:
    """CORE-Voting's validation predictions per (line, fold) of training perturbations, with each row's
    gene prior from the fold's own training rows."""
    table, kg = resolve_inputs(config, Path("."))
    parts = []
    for line in lines:
        for f, inner, val in training_folds(table.frame, line, folds, seed):
            t = time.perf_counter()
            p, counts = CoreVoting(kg).fit(inner).predict_with_evidence(val)
            parts.append(
                val[["cell_line", "perturbation", "gene", "label"]].assign(
                    fold=f,
                    score=p,
                    p_prior=gene_prior(inner, val["gene"].to_numpy()),
                    n_evidence=(counts["n_pos_evidence"] + counts["n_neg_evidence"]).to_numpy(),
                )
            )
            print(f"{line} fold {f}: fitted and scored in {time.perf_counter() - t:.0f}s", flush=True)
    return pd.concat(parts, ignore_index=True)


def _fold_predictions_cached(
    config: BenchmarkConfig, lines: list[str], folds: int, seed: int, oof: Path | None
) -> pd.DataFrame:
    return cached_frame(oof, lambda: fold_predictions(config, lines, folds, seed))


RANKING_CANDIDATES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "effect (log risk ratio, shrunk k=1; the earlier default)": lambda s, pr, n: effect_score(s, pr, n),
    "p_de": lambda s, pr, n: s,
    "excess: p_de - p_prior": lambda s, pr, n: s - pr,
    "excess shrunk k=1": lambda s, pr, n: n / (n + 1) * (s - pr),
    "excess shrunk k=3": lambda s, pr, n: n / (n + 3) * (s - pr),
    "control: random order": lambda s, pr, n: np.zeros_like(s),
    "control: prior": lambda s, pr, n: pr,
    "control: prior below 0.2": lambda s, pr, n: np.where(pr < 0.2, pr, -np.inf),
    "control: rarity (-prior)": lambda s, pr, n: -pr,
}
FLOORS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1)


def compare_ranking(
    config: BenchmarkConfig, lines: list[str], folds: int, seed: int, oof: Path | None
) -> None:
    """Score every ranking candidate by excess DE@k, then the floors of the best one."""
    t0 = time.perf_counter()
    preds = _fold_predictions_cached(config, lines, folds, seed, oof)
    rows = []
    for (line, f), d in preds.groupby(["cell_line", "fold"], sort=True, observed=True):
        y, s, p = d["label"].to_numpy(), d["score"].to_numpy(), d["perturbation"].to_numpy()
        prior, n = d["p_prior"].to_numpy(), d["n_evidence"].to_numpy().astype(np.float64)
        g = d["gene"].to_numpy()
        for name, fn in RANKING_CANDIDATES.items():
            key = fn(s, prior, n)
            row = {"cell_line": line, "fold": f, "candidate": name}
            for k in (10, 50):
                row[f"excess_de_at_{k}"] = ranking_metric(f"excess_de_at_{k}", y, s, g, p, prior, key)
            row["specific_precision_at_10"] = ranking_metric(
                "specific_precision_at_10", y, s, g, p, prior, key
            )
            top = rank_top(d.assign(_key=key), 10)
            row["top10_p_de_below_0.05"] = float((top["score"] < 0.05).mean())
            rows.append(row)
    res = pd.DataFrame(rows)
    names = list(RANKING_CANDIDATES)
    for metric in ("excess_de_at_10", "excess_de_at_50", "specific_precision_at_10", "top10_p_de_below_0.05"):
        tab = res.pivot_table(index="candidate", columns="cell_line", values=metric).reindex(names)
        tab["mean"] = tab.mean(axis=1)
        print(
            f"\n{metric}, validation perturbations of the training split ({len(lines)} lines x {folds} folds)"
        )
        print(tab.round(4).to_string())
    ranked = res[~res["candidate"].str.startswith("control")]
    best = ranked.groupby("candidate")["excess_de_at_10"].mean().idxmax()
    print(f"\nbest by mean excess DE@10: {best}")
    fn = RANKING_CANDIDATES[best]
    frows = []
    for (line, f), d in preds.groupby(["cell_line", "fold"], sort=True, observed=True):
        s, prior = d["score"].to_numpy(), d["p_prior"].to_numpy()
        key = fn(s, prior, d["n_evidence"].to_numpy().astype(np.float64))
        top = rank_top(d.assign(_key=key, _excess=s - prior), 10)
        n_perts = d["perturbation"].nunique()
        for tau in FLOORS:
            kept = top[top["_excess"] >= tau]
            frows.append(
                {
                    "cell_line": line,
                    "fold": f,
                    "floor": tau,
                    "listed_per_perturbation": len(kept) / n_perts,
                    "p_de_below_0.05": float((kept["score"] < 0.05).mean()) if len(kept) else 0.0,
                    "label_sum": float(kept["label"].sum()),
                    "prior_sum": float(kept["p_prior"].sum()),
                    "n": len(kept),
                }
            )
    fr = pd.DataFrame(frows)
    agg = fr.groupby(["cell_line", "floor"]).agg(
        listed_per_perturbation=("listed_per_perturbation", "mean"),
        p_de_below_005=("p_de_below_0.05", "mean"),
        label_sum=("label_sum", "sum"),
        prior_sum=("prior_sum", "sum"),
        n=("n", "sum"),
    )
    agg["realised_excess_per_listed"] = (agg["label_sum"] - agg["prior_sum"]) / agg["n"]
    agg["lift (DE / prior)"] = agg["label_sum"] / agg["prior_sum"]
    print(f"\nfloors on p_de - p_prior of the top 10 by {best!r}:")
    print(agg.drop(columns=["label_sum", "prior_sum"]).round(4).to_string())
    # the floor: the lowest band edge above which every band of predicted excess really carried a surplus
    # (Σ label − Σ prior > 0, one-sided z >= 1.96) on every line, over all validation rows
    d = preds.assign(_excess=preds["score"] - preds["p_prior"], _surplus=preds["label"] - preds["p_prior"])
    surplus_floor(d, BANDS, digits=4)
    print(f"({time.perf_counter() - t0:.0f}s)")


BANDS = (-1.0, 0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 1.0)


def rank_top(d: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` highest-``_key`` rows of each perturbation (ties in row order)."""
    return (
        d.sort_values(["perturbation", "_key"], ascending=[True, False], kind="stable")
        .groupby("perturbation", sort=False)
        .head(k)
    )


def compare_effect(
    config: BenchmarkConfig, lines: list[str], folds: int, seed: int, oof: Path | None
) -> None:
    """Score every effect candidate on the fold predictions."""
    t0 = time.perf_counter()
    preds = _fold_predictions_cached(config, lines, folds, seed, oof)
    rows = []
    for (line, f), d in preds.groupby(["cell_line", "fold"], sort=True, observed=True):
        y, s, p = d["label"].to_numpy(), d["score"].to_numpy(), d["perturbation"].to_numpy()
        prior, n = d["p_prior"].to_numpy(), d["n_evidence"].to_numpy()
        g = d["gene"].to_numpy()
        for name, params in EFFECT_CANDIDATES.items():
            key = (
                s
                if name == "p_de"
                else np.zeros_like(s)
                if params is None
                else effect_score(s, prior, n, params)
            )
            for k in (10, 50):
                v = ranking_metric(f"specific_precision_at_{k}", y, s, g, p, prior, key)
                rows.append({"cell_line": line, "fold": f, "candidate": name, "k": k, "value": v})
    res = pd.DataFrame(rows)
    names = list(EFFECT_CANDIDATES)
    for k in (10, 50):
        r = res[res["k"] == k]
        print(
            f"\nspecific-hit precision@{k}, validation perturbations of the training split ({len(lines)} lines x {folds} folds)"
        )
        tab = r.pivot_table(index="candidate", columns="cell_line", values="value").reindex(names)
        tab["mean"] = tab.mean(axis=1)
        wide = r.pivot_table(index=["cell_line", "fold"], columns="candidate", values="value")
        tab["x p_de"] = (wide.div(wide["p_de"], axis=0)).groupby(level=0).mean().T.reindex(names).min(axis=1)
        tab["x random"] = (
            (wide.div(wide["random"], axis=0)).groupby(level=0).mean().T.reindex(names).min(axis=1)
        )
        print(tab.round(4).to_string())
        print("(x p_de / x random: the smallest per-line mean ratio over folds)")
    best = res[res["k"] == 10].groupby("candidate")["value"].mean().drop(["p_de", "random"]).idxmax()
    print(f"\nbest by mean specific precision@10: {best} ({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
