"""Which KG sources help CORE-Voting? A per-source ablation on TRAINING perturbations only.

Usage:
    python benchmarks/kg_ablation.py [--shared ../shared/data] [--task de] [--folds 4]
                                     [--configs +string,+coessentiality,+huri,+dorothea,-go,-gene_network,...]
    python benchmarks/kg_ablation.py --dataset lincs --configs +drug_structures   # drugs: chemical structure

The reference is the default KG (every default source whose file exists). ``+NAME`` adds an optional source
(KG release 2: string, coessentiality, huri, dorothea) to it, ``-NAME`` drops a default source from it, and
``+a+b`` adds both. For
each configuration the KG is rebuilt and CORE-Voting is scored by the same 4-fold cross-validation over the
TRAINING perturbations of each PerturbQA line as ``benchmarks/inner_cv.py`` (test rows are dropped on
load; ``--dataset lincs`` does the same over the training drugs of the LINCS table as the benchmark splits it).
Prints, for macro per-gene AUROC and for excess DE@10 (ranking by p_de − prior, the prior from the
inner folds), the paired difference of every configuration against the reference over line × fold splits
(mean, standard error, wins), the KG build time, and the relations each configuration has. Note that IDF
weights and the hub cut refer to the genes all sources mention, so adding a source also reweights the others.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd

from _common import parser, start, training_folds
from coreperturb.data._io import load_perturbqa
from coreperturb.data._signatures import load_lincs
from coreperturb.evaluation._metrics import excess_de_at, macro_per_gene_auroc
from coreperturb.graph._sources import available_sources, build_kg
from coreperturb.predictors._core_voting import CoreVoting
from coreperturb.predictors._effect import gene_prior

DEFAULT_CONFIGS = "+string,+coessentiality,+huri,+dorothea,-go,-gene_network,-reactome,-corum"


def main() -> None:
    ap = parser(__doc__, folds=True)
    ap.add_argument("--task", default="de")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS)
    ap.add_argument("--dataset", choices=("perturbqa", "lincs"), default="perturbqa")
    args = ap.parse_args()
    start(args, args.dataset)
    if args.dataset == "lincs":
        table, _ = load_lincs(args.shared / "lincs", tasks=[args.task])  # the benchmark's split (seed 0)
        cell_lines = ["lincs"]
    else:
        cell_lines = args.cell_lines
        table = load_perturbqa(args.shared / "perturbqa", cell_lines, [args.task])
    genes = pd.unique(pd.concat([table.frame["gene"], table.frame["perturbation"]]).astype(str))
    kg_dir = args.shared / "kg"
    base = available_sources(kg_dir)
    configs: dict[str, list[str]] = {"reference": base}
    for c in args.configs.split(","):
        sources = list(base)
        for sign, name in re.findall(r"([+-])([a-z_]+)", c):  # e.g. "+string+dorothea" or "-corum"
            sources = [*sources, name] if sign == "+" else [s for s in sources if s != name]
        configs[c] = sources
    rows = []
    t0 = time.perf_counter()
    for label, sources in configs.items():
        t = time.perf_counter()
        kg = build_kg(kg_dir, sources, extra_genes=genes)
        build_s = time.perf_counter() - t
        print(f"{label}: KG built in {build_s:.1f}s; relations {kg.relation_names}", flush=True)
        for line in cell_lines:
            for f, inner, val in training_folds(table.frame, line, args.folds, args.seed):  # no test row
                p = CoreVoting(kg).fit(inner).predict_proba(val)[:, 1]
                y, g = val["label"].to_numpy(), val["gene"].astype(str).to_numpy()
                score = macro_per_gene_auroc(y, p, g, val["perturbation"].to_numpy(), 0.5)
                prior = gene_prior(inner, g)  # NaN for a gene the inner folds never saw: it counts 0
                excess = excess_de_at(y, prior, p - prior, val["perturbation"].to_numpy(), 10)
                rows.append(
                    {"config": label, "cell_line": line, "fold": f, "auroc": score, "excess_de_at_10": excess}
                )
        print(f"{label}: mean {np.mean([r['auroc'] for r in rows if r['config'] == label]):.4f}", flush=True)
    res = pd.DataFrame(rows)
    print(
        f"\ninner-CV macro per-gene AUROC, task {args.task} ({time.perf_counter() - t0:.0f}s, train perturbations only)"
    )
    for metric in ("auroc", "excess_de_at_10"):
        wide = res.pivot_table(index=["cell_line", "fold"], columns="config", values=metric)
        print(f"\n{metric}")
        print(res.pivot_table(index="config", columns="cell_line", values=metric).round(4).to_string())
        ref = wide["reference"]
        for label in configs:
            d = wide[label] - ref
            print(
                f"{label:>16}: mean {wide[label].mean():.4f}  vs reference {d.mean():+.4f} "
                f"(se {d.std(ddof=1) / np.sqrt(len(d)):.4f}, wins {(d > 0).sum()}/{len(d)})"
            )


if __name__ == "__main__":
    main()
