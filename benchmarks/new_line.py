"""Every screen counts: a PerturbQA line held out whole, then piloted with N of its perturbations.

    python benchmarks/new_line.py [--shared ../shared/data] [--cell-lines k562,rpe1,hepg2,jurkat]
                                  [--held-out hepg2] [--pilots 0,25,50,100,200,all] [--draws 3]
                                  [--designed] [--own-model] [--out new_line.csv]

For each held-out line H (``--held-out``, default every line of ``--cell-lines``) and pilot size N:

* N = 0, a line with no screen: the other lines are fitted with every row they have (train and test: they are
  complete screens here; CORE-Voting, cross-line evidence by default) and H's test pairs are predicted by
  ``predict`` as a line the model has no screen of (the other lines' answers averaged, calls calibrated on
  their held-out perturbations). No row of H is read for fitting, calibration, priors or any default.
* N > 0, a pilot screen: N perturbations drawn at random from H's TRAINING split (``--draws`` draws per N),
  their rows added as H's own screen; every line is fitted as ``fit`` fits it by default, so H's answer blends
  its own model's with the other lines' (``FitConfig.other_lines_weight``); H's test pairs are predicted.
  ``all``: H's whole training split. ``--own-model``: only H's model is fitted (``FitConfig.fit_lines``),
  reading the other lines as evidence, and its answer alone is scored (the protocol of earlier releases).

``--designed`` adds, per N, the pilot :func:`coreperturb.stages._pilots.propose_pilot` proposes from the other
lines' screens and the KG alone (``coreperturb design``; deterministic), among H's training perturbations,
scored beside the random draws (the paired difference is printed per draw).

``--choose`` chooses how a screened line answers for a line with no screen, on TRAINING pairs only: the other
lines are fitted as for N = 0 and H's training pairs (never its test split) are scored with each candidate
answer of a screened line: its model's; its measurement of the pair where it has one (DE or not), else its
model's; that, plus "not DE" for a gene its whole DE list leaves out; its measured DE pairs only; beside them
the copy baseline, and mixes of the measured answer with it on the table's scale (``v * answer + (1 - v) *
copy``, the answer's model part as ``score_sample``); and the product's own answer for a line with no screen
(``predict`` with H's name), its ``score`` and its ``score_sample`` (the sources averaged on the tables' scale:
the ranking ``score`` has since averaging there was chosen); and a measurement weighted 2, 4 or infinitely many
times a model's answer in that mean (infinite: the measurements alone where any source has one); and that mean
times the perturbation's strength (its DE rate in the other lines that screened it over theirs) to the power
0.5 or 1; and the sources read as the product reads them, averaged on the log-odds scale instead of the
probabilities'.

Scored on H's test split (its test perturbations are never a pilot): per-gene AUROC (PerturbQA's macro
mean), excess DE@10 of the table (mean of label - p_prior_sample over each test perturbation's 10 highest
score_sample - p_prior_sample), coverage of the calls at 0.9 and the share of uncertain calls; and over the
genome (whole-list test perturbations, asked not-DE pairs weighted by the genome pairs they stand for):
sum of P(DE) / DE genes, the DE rate of pairs with P(DE) >= 0.2 beside their mean P(DE), the calls' coverage,
and their coverage among the DE pairs. Beside them the
copy baseline of a line held out whole: the pair's mean label in the other lines where it was measured there,
else the perturbation's DE rate there times the gene's over the overall rate (the gene's rate for a
perturbation no other line screened).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from _common import parser, start, write_frame
from coreperturb import build_kg, fit, load_perturbqa, predict
from coreperturb.data._design import SamplingDesign
from coreperturb.data._schema import QueryTable
from coreperturb.evaluation._calls import call_metrics
from coreperturb.evaluation._genome import genome_metrics, genome_weights
from coreperturb.evaluation._metrics import grouped_auroc
from coreperturb.stages import FitConfig, FittedModels
from coreperturb.stages._fitted import TRAIN_COLUMNS
from coreperturb.stages._pilots import propose_pilot
from coreperturb.stages._unscreened import lines_mean, measured_or


def copy_baseline(others: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """The other lines' outcome of each test pair where measured, else perturbation rate x gene rate."""
    pair = others.groupby(["perturbation", "gene"])["label"].mean()
    overall = float(others["label"].mean())
    p_rate = others.groupby("perturbation")["label"].mean()
    g_rate = others.groupby("gene")["label"].mean()
    idx = pd.MultiIndex.from_frame(test[["perturbation", "gene"]])
    measured = pair.reindex(idx).to_numpy()
    g = g_rate.reindex(test["gene"]).fillna(overall).to_numpy()
    p = p_rate.reindex(test["perturbation"]).fillna(overall).to_numpy()
    return np.where(np.isfinite(measured), measured, np.clip(p * g / overall, 0.0, 1.0))


def excess_at_10(pred: pd.DataFrame) -> float:
    """Table-scale excess DE@10 (mean of label - prior over each perturbation's 10 highest excess)."""
    ex = pred["score_sample"] - pred["p_prior_sample"]
    top = pred.assign(_ex=ex).sort_values("_ex", ascending=False).groupby("perturbation").head(10)
    return float((top["label"] - top["p_prior_sample"]).mean())


def genome_figures(pred: pd.DataFrame, universe: int, design: SamplingDesign) -> dict[str, float]:
    """Over the genome, off-target pairs of the whole-list test perturbations, each asked not-DE pair weighted
    by the genome pairs it stands for (``1 / (s_p r_g)``, as ``evaluate`` weights them): :func:`genome_metrics`'s
    Σ P(DE) / DE genes (``genome_de_ratio``) and calls' coverage; beside them the genome DE rate of pairs with
    P(DE) >= 0.2 and their mean P(DE), and the calls' coverage among the DE pairs."""
    p = pred.loc[~pred["on_target"].astype(bool)]
    y, s = p["label"].to_numpy(dtype=np.int64), p["score"].to_numpy(dtype=np.float64)
    perts, c = p["perturbation"].to_numpy(), p["call"].to_numpy().astype(str)
    # each asked not-DE pair also carries its gene's asking factor, its gene binned by the model's prior (of
    # the genes the held-out line's test rows ask: a line with no screen has no readout genes of its own)
    genes = p["gene"].to_numpy()
    priors = p.groupby("gene", sort=False)["p_prior"].first()
    m = genome_metrics(
        y, s, perts, design=design, universe=universe, calls=c, genes=genes, gene_priors=priors
    )
    w, _ = genome_weights(y, perts, design, universe, genes=genes, gene_priors=priors)
    hi, de = np.isfinite(s) & (s >= 0.2) & (w > 0), (c != "") & (w > 0) & (y == 1)
    return {
        "genome_de_ratio": m.get("genome_de_ratio", float("nan")),
        "genome_high_p_mean": float(s[hi].mean()) if hi.any() else float("nan"),
        "genome_high_p_de_rate": float((w * y)[hi].sum() / w[hi].sum()) if hi.any() else float("nan"),
        "genome_coverage": m.get("genome_coverage", float("nan")),
        "coverage_de_pairs": float((c[de] != "not DE").mean()) if de.any() else float("nan"),
    }


def score(pred: pd.DataFrame, universe: int, design: SamplingDesign) -> dict[str, float]:
    y, s, genes = pred["label"].to_numpy(), pred["score"].to_numpy(), pred["gene"].to_numpy()
    calls = call_metrics(y, pred["call"].to_numpy(), pred["p_prior"].to_numpy(), "DE")
    return {
        "per_gene_auroc": float(grouped_auroc(y, s, genes)[0]),
        "excess_de_at_10": excess_at_10(pred),
        "coverage": calls.get("coverage", float("nan")),
        "coverage_min_prior_decile": calls.get("coverage_min_prior_decile", float("nan")),
        "uncertain_rate": calls.get("uncertain_rate", float("nan")),
        **genome_figures(pred, universe, design),
    }


def perturbation_strength(others: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """Per pair: the mean over the other lines that screened its perturbation of its DE rate there over the
    line's; 1 where no other line screened it."""
    rate = others.groupby(["cell_line", "perturbation"])["label"].mean()
    line_rate = others.groupby("cell_line")["label"].mean()
    rel = (rate / line_rate.reindex(rate.index.get_level_values(0)).to_numpy()).groupby(level=1).mean()
    return rel.reindex(pairs["perturbation"]).fillna(1.0).to_numpy(dtype=np.float64)


def weighted_measurements(labs: list[np.ndarray], samples: list[np.ndarray], m: float) -> np.ndarray:
    """Each source's measurement (weight ``m``) where it has one, else its model's table-scale answer (weight
    1), averaged; ``m`` infinite: the measurements alone wherever a source has one."""
    lab, sample = np.vstack(labs), np.vstack(samples)
    seen = np.isfinite(lab)
    if np.isinf(m):
        any_seen = seen.any(axis=0)
        meas = np.where(seen, lab, 0.0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1)
        ok = np.isfinite(sample)
        model = np.where(ok, sample, 0.0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1)
        return np.where(any_seen, meas, model)
    w = np.where(seen, m, np.where(np.isfinite(sample), 1.0, 0.0))
    x = np.where(seen, lab, np.where(np.isfinite(sample), sample, 0.0))
    return (w * x).sum(axis=0) / np.maximum(w.sum(axis=0), 1e-12)


def choose(frame: pd.DataFrame, kg: object, design: object, held: list[str]) -> None:
    """Per held-out line: per-gene AUROC of each candidate no-screen answer on its TRAINING pairs."""
    results = []
    for line in held:
        others = frame.loc[frame["cell_line"] != line].assign(split="train")
        pairs = frame.loc[(frame["cell_line"] == line) & (frame["split"] == "train")].reset_index(drop=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = fit(QueryTable(others, require_test=False, design=design), kg, FitConfig(seed=0))
            scored = {s: predict(models, pairs.assign(cell_line=s)) for s in models.cell_lines}
            answers = {s: p["score"].to_numpy() for s, p in scored.items()}
            product = predict(models, pairs)  # the product's answer for a line with no screen
        key = pd.MultiIndex.from_frame(pairs[["perturbation", "gene"]])
        labs: list[np.ndarray] = []
        samples: list[np.ndarray] = []
        variants: dict[str, list[np.ndarray]] = {
            "model": [],
            "measured": [],
            "measured + whole lists": [],
            "measured DE": [],
            "measured, table scale": [],
        }
        for s, model in answers.items():
            rows = others.loc[others["cell_line"] == s]
            lab = (
                rows.groupby(["perturbation", "gene"])["label"].max().reindex(key).to_numpy(dtype=np.float64)
            )
            n_de = rows.groupby("perturbation")["label"].sum()
            whole = set(n_de.index[n_de < 13])
            readouts = set(rows["gene"])
            implied = (
                ~np.isfinite(lab)
                & pairs["perturbation"].isin(whole).to_numpy()
                & pairs["gene"].isin(readouts).to_numpy()
            )
            seen = np.isfinite(lab) & np.isfinite(model)
            variants["model"].append(model)
            variants["measured"].append(np.where(seen, lab, model))
            variants["measured + whole lists"].append(
                np.where(seen, lab, np.where(implied & np.isfinite(model), 0.0, model))
            )
            variants["measured DE"].append(np.where(seen & (lab == 1), 1.0, model))
            sample = scored[s]["score_sample"].to_numpy()
            variants["measured, table scale"].append(
                np.where(np.isfinite(lab) & np.isfinite(sample), lab, sample)
            )
            labs.append(lab)
            samples.append(sample)
        y, genes = pairs["label"].to_numpy(), pairs["gene"].to_numpy()
        means = {}
        # a measurement outweighs a model's answer m to 1 (inf: only the measurements where there are any)
        for m in (2.0, 4.0, np.inf):
            means[f"measured x{m:g} vs a model, table scale"] = weighted_measurements(labs, samples, m)
        for name, each in variants.items():
            x = np.vstack(each)
            ok = np.isfinite(x)
            means[name] = np.where(ok, x, 0.0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1)
        means["copy"] = copy_baseline(others, pairs)  # the baseline, for comparison
        strength = perturbation_strength(others, pairs)
        for gamma in (0.5, 1.0):  # the answer times how strongly the other lines saw the perturbation act
            means[f"measured, table scale x strength^{gamma:g}"] = np.clip(
                means["measured, table scale"] * strength**gamma, 0.0, 1.0
            )
        # each source read as the product reads it (its measurement as FitConfig.measured_pairs reads it, its
        # model elsewhere, table scale), averaged over the sources on the log-odds scale instead
        read = np.vstack(
            [
                measured_or(
                    scored[s]["score_sample"],
                    models,
                    s,
                    "de",
                    (pairs["perturbation"].to_numpy(), pairs["gene"].to_numpy()),
                    target=line,
                )
                for s in answers
            ]
        )
        means["no-screen rule, sources pooled on log-odds: table scale"] = lines_mean(list(read), "log_odds")
        means["no-screen rule (product): genome scale"] = product["score"].to_numpy()
        means["no-screen rule (product): table scale"] = product["score_sample"].to_numpy()
        for v in (0.25, 0.5, 0.75):  # the answer mixed with the copy baseline, both on the table's scale
            means[f"mix {v} measured + {1 - v} copy"] = (
                v * means["measured, table scale"] + (1 - v) * means["copy"]
            )
        for name, mean in means.items():
            auroc = float(grouped_auroc(y, mean, genes)[0])
            results.append({"held_out": line, "answer": name, "per_gene_auroc_train_pairs": auroc})
            print(f"{line}: {name}: per-gene AUROC on its training pairs {auroc:.4f}", flush=True)
    table = pd.DataFrame(results).pivot(
        index="answer", columns="held_out", values="per_gene_auroc_train_pairs"
    )
    table["mean"] = table.mean(axis=1)
    print(table.round(4).to_string())


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument(
        "--held-out", default=None, help="comma-separated lines to hold out (default: every line)"
    )
    ap.add_argument("--pilots", default="0,25,50,100,200,all", help="pilot sizes N (0: no screen; all)")
    ap.add_argument("--draws", type=int, default=3, help="random pilots per N")
    ap.add_argument("--designed", action="store_true", help="also the designed pilot of each N > 0")
    ap.add_argument("--choose", action="store_true", help="choose the no-screen answer on training pairs")
    ap.add_argument("--own-model", action="store_true", help="pilots: fit and score H's own model alone")
    ap.add_argument("--out", type=Path, default=None, help="CSV of every figure")
    args = ap.parse_args()
    start(args)
    kg = build_kg(args.shared / "kg")
    table = load_perturbqa(args.shared / "perturbqa", args.cell_lines, ["de"])
    frame = table.frame.astype({"cell_line": str, "perturbation": str, "gene": str})
    held = args.held_out.split(",") if args.held_out else list(args.cell_lines)
    if args.choose:
        choose(frame, kg, table.design, held)
        return
    rows = []
    design = table.design or SamplingDesign("uniform", None, "none")
    for line in held:
        others = frame.loc[frame["cell_line"] != line].assign(split="train")  # complete screens
        own = frame.loc[frame["cell_line"] == line]
        test = own.loc[own["split"] == "test"].reset_index(drop=True)
        train_perts = np.sort(own.loc[own["split"] == "train", "perturbation"].unique())
        copy = copy_baseline(others, test)
        y, genes = test["label"].to_numpy(), test["gene"].to_numpy()
        auroc = float(grouped_auroc(y, copy, genes)[0])
        rows.append({"held_out": line, "n": 0, "draw": 0, "method": "copy", "per_gene_auroc": auroc})
        print(f"{line}: copy baseline per-gene AUROC {rows[-1]['per_gene_auroc']:.4f}", flush=True)
        probe = FittedModels(
            kg, {}, others.loc[:, list(TRAIN_COLUMNS)], FitConfig()
        )  # for the designed pilots
        for n_text in args.pilots.split(","):
            n = len(train_perts) if n_text == "all" else int(n_text)
            draws: list[int | str] = list(range(1 if n in (0, len(train_perts)) else args.draws))
            if args.designed and 0 < n < len(train_perts):
                draws.append("designed")
            for draw in draws:
                t = time.perf_counter()
                if draw == "designed":
                    pilot = propose_pilot(probe, n=n, candidates=list(train_perts))["perturbation"].to_numpy()
                else:
                    rng = np.random.default_rng(1000 * int(draw) + n)
                    pilot = (
                        rng.choice(train_perts, size=n, replace=False) if n else np.array([], dtype=object)
                    )
                mine = own.loc[(own["split"] == "train") & own["perturbation"].isin(pilot)]
                fitted = pd.concat([others, mine], ignore_index=True)
                config = FitConfig(seed=0, fit_lines=(line,) if n and args.own_model else ())
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    models = fit(QueryTable(fitted, require_test=False, design=table.design), kg, config)
                    pred = predict(models, test)
                figures = score(pred, own["gene"].nunique(), design)
                method = "core_voting (designed pilot)" if draw == "designed" else "core_voting"
                rows.append({"held_out": line, "n": n, "draw": str(draw), "method": method, **figures})
                print(
                    f"{line} N={n} draw {draw}: "
                    + ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
                    + f" ({time.perf_counter() - t:.0f}s)",
                    flush=True,
                )
    out = pd.DataFrame(rows)
    designed = out.loc[out["method"] == "core_voting (designed pilot)"]
    for (line, n), d in designed.groupby(["held_out", "n"]):
        rand = out.loc[(out["held_out"] == line) & (out["n"] == n) & (out["method"] == "core_voting")]
        diff = float(d["per_gene_auroc"].iloc[0]) - rand["per_gene_auroc"].to_numpy()
        print(
            f"{line} N={n}: designed - random per-gene AUROC {diff.mean():+.4f} (sd {diff.std(ddof=1):.4f} over "
            f"{len(diff)} random draws; designed better in {(diff > 0).sum()})"
        )
    summary = out.groupby(["held_out", "method", "n"])[["per_gene_auroc", "excess_de_at_10", "coverage"]]
    print(summary.agg(["mean", "std", "count"]).round(4).to_string())
    if args.out:
        write_frame(out, args.out)


if __name__ == "__main__":
    main()
