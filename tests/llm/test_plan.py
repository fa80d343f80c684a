"""The LLM benchmark says what it will cost before it asks anything, and --max-queries bounds it all."""

from __future__ import annotations

from coreperturb._config import BenchmarkConfig
from coreperturb._pipeline import held_out_queries, llm_plan
from coreperturb.data import QueryTable


def test_plan_counts_calibration_and_test_calls(synth_table: QueryTable) -> None:
    config = BenchmarkConfig.from_options(
        methods="gene_frequency,llm_isolated,core_reasoning",
        max_queries=10,
        calibration_queries=30,
        tasks="de",
    )
    test = held_out_queries(synth_table, 10).query("task == 'de'")
    plan = llm_plan(config, synth_table, test)
    n_test = len(test)
    assert f"{2 * 30 + 2 * n_test:,} calls (60 calibration + {2 * n_test} test)" in plan[0]
    assert "llm_isolated, core_reasoning" in plan[0]
    assert "embedded model" in plan[1] and "min" in plan[1]


def test_no_llm_method_no_plan(synth_table: QueryTable) -> None:
    config = BenchmarkConfig.from_options(methods="gene_frequency,core_voting")
    assert llm_plan(config, synth_table, held_out_queries(synth_table)) == []
