"""The benchmark's test queries: which rows are asked (``--max-queries`` samples gene by gene), what the LLM
methods will cost before anything is asked, and when a sample is too small for its metrics to mean much."""

from __future__ import annotations

import pandas as pd

from coreperturb._config import BenchmarkConfig
from coreperturb.data._sampling import stratified_by_gene
from coreperturb.data._schema import QueryTable


def held_out_queries(table: QueryTable, max_queries: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The test rows of every (cell line, task), optionally sampled gene by gene (``max_queries`` each)."""
    parts = []
    for _, _, sub in table.groups():
        test = sub.split("test")
        if max_queries is not None:
            test = stratified_by_gene(test, max_queries, seed)
        parts.append(test.reset_index(drop=True))
    return pd.concat(parts, ignore_index=True).astype({"cell_line": str, "task": str, "split": str})


MIN_GENES_FOR_PER_GENE_AUROC = 30

EMBEDDED_SECONDS_PER_CALL = 1.5
"""What one call of the embedded model (SmolLM2-135M, answer only) takes on 2 cores: 1,220 s for about 800
calls of the README's LLM command (200 test queries and 2 x 199 calibration calls). Used for the plan's time
estimate only; a rationale (``--reasoning-tokens N``) adds about N / 40 s a call."""


def llm_plan(config: BenchmarkConfig, table: QueryTable, test: pd.DataFrame) -> list[str]:
    """What the LLM methods of a benchmark will cost, said before anything is asked: per method, the
    calibration calls (held-out training queries) and the test calls, their total and, for the embedded model,
    a time estimate. Answers already in the response cache cost nothing; the estimate does not know them."""
    from coreperturb.stages._fitting import uses_llm

    methods = [m for m in config.fit.methods if uses_llm(m)]
    if not methods:
        return []
    llm = config.fit.llm_config
    calibration = test_calls = 0
    for (line, task), grp in test.groupby(["cell_line", "task"], sort=True):
        n_train = len(table.subset(str(line), str(task)).split("train"))
        calibration += min(llm.calibration_queries, n_train) * len(methods)
        test_calls += len(grp) * len(methods)
    total = calibration + test_calls
    lines = [
        f"LLM plan: {', '.join(methods)} on {test_calls // len(methods)} test queries "
        f"({'--max-queries ' + str(config.evaluate.max_queries) if config.evaluate.max_queries else 'every test row'}) "
        f"and up to {llm.calibration_queries} calibration queries per line and task (--calibration-queries): "
        f"{total:,} calls ({calibration:,} calibration + {test_calls:,} test), fewer where the response cache "
        "already holds the answer"
    ]
    if llm.llm == "embedded":
        per_call = EMBEDDED_SECONDS_PER_CALL + llm.reasoning_tokens / 40
        minutes = total * per_call / 60
        lines.append(
            f"at about {per_call:.1f} s a call for the embedded model on 2 cores, about {minutes:,.0f} min "
            f"({'stop with Ctrl-C: a rerun resumes' if minutes > 5 else 'a short run'})"
        )
    else:
        lines.append("the time depends on the server; the progress bar shows the rate once calls return")
    return lines


def sample_warnings(table: QueryTable, test: pd.DataFrame, max_queries: int | None) -> list[str]:
    """Honest small samples: one line per (cell line, task) whose per-gene AUROC would rest on fewer than
    :data:`MIN_GENES_FOR_PER_GENE_AUROC` genes, saying how ``--max-queries`` sampled and how its positive
    rate compares with the whole test split."""
    out = []
    for (line, task), grp in test.groupby(["cell_line", "task"], sort=True):
        both = int((grp.groupby("gene", observed=True)["label"].nunique() == 2).sum())
        if both >= MIN_GENES_FOR_PER_GENE_AUROC:
            continue
        msg = (
            f"{line}/{task}: per-gene AUROC rests on only {both} gene(s) with both classes among "
            f"{len(grp)} test queries (fewer than {MIN_GENES_FOR_PER_GENE_AUROC}); its CI will be wide"
        )
        if max_queries is not None:
            full = table.subset(str(line), str(task)).split("test")
            msg += (
                f". max_queries={max_queries} samples gene by gene (up to 20 queries per gene, each gene with "
                f"at least one positive and one negative), so positives are {grp['label'].mean():.0%} of the "
                f"sample against {full['label'].mean():.0%} of the test split; raise max_queries for more genes"
            )
        out.append(msg)
    return out


__all__ = [
    "EMBEDDED_SECONDS_PER_CALL",
    "MIN_GENES_FOR_PER_GENE_AUROC",
    "held_out_queries",
    "llm_plan",
    "sample_warnings",
]
