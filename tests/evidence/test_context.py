"""Context evidence: the same perturbations observed in other cell lines (``core_voting_transfer``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb.data import QueryTable
from coreperturb.evaluation._metrics import METRICS
from coreperturb.evidence._context import ContextEvidence, check_context
from coreperturb.evidence._pool import ObservationPool
from coreperturb.graph import KnowledgeGraph
from coreperturb.predictors import make_predictor


def _rows(line: str, triples: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(line, p, g, y) for p, g, y in triples], columns=["cell_line", "perturbation", "gene", "label"]
    )


def test_context_features_count_pairs_rate_and_similar_responders() -> None:
    genes = [f"g{i}" for i in range(6)]
    # context line "B": P1 and T1 both hit g0..g2 (same programme); P2 hits nothing; S is strong everywhere
    ctx = _rows(
        "B",
        [("Q", g, int(g in ("g0", "g1", "g2"))) for g in genes]
        + [("P1", g, int(g in ("g0", "g1", "g2"))) for g in genes]
        + [("P2", g, 0) for g in genes]
        + [("S", g, 1) for g in genes[:5]]
        + [("S", "g5", 0)],
    )
    ev = ContextEvidence.from_frame(ctx, module_k=3, module_self=1.0, top_k=1)
    # target line: P1 made g3 DE, P2 did not
    pool = ObservationPool.from_frame(_rows("A", [("P1", "g3", 1), ("P2", "g3", 0), ("P1", "g4", 0)]))
    queries = _rows("A", [("Q", "g0", 0), ("Q", "g3", 0), ("unseen", "g3", 0), ("S", "g3", 0)])
    f = ev.features(queries, pool)
    assert list(f["ctx_n"]) == [1, 1, 0, 1]
    assert list(f["ctx_pair_n"]) == [1, 1, 0, 1]
    assert list(f["ctx_pair_pos"]) == [1, 0, 0, 1]
    assert f.loc[3, "ctx_rate"] > f.loc[0, "ctx_rate"] > 0 and f.loc[2, "ctx_rate"] == 0
    # Q responds like P1 in the context, and P1 made g3 DE here: the vote for (Q, g3) is positive
    assert f.loc[1, "vote_ctx"] > 0 and f.loc[1, "mass_ctx"] > 0
    assert f.loc[2, "vote_ctx"] == 0 and f.loc[2, "mass_ctx"] == 0
    assert np.isfinite(f.to_numpy()).all()


def test_check_context_refuses_leaky_rows() -> None:
    train = _rows("A", [("P1", "g0", 1)])
    with pytest.raises(ValueError, match=r"shares cell line\(s\) \['A'\]"):
        check_context(_rows("A", [("P2", "g0", 1)]), train)
    with pytest.raises(ValueError, match="training rows only"):
        check_context(_rows("B", [("P2", "g0", 1)]).assign(split="test"), train)
    with pytest.raises(ValueError, match=r"missing \['label'\]"):
        check_context(_rows("B", [("P2", "g0", 1)]).drop(columns="label"), train)


def test_transfer_needs_context(synth_table: QueryTable, synth_kg: KnowledgeGraph) -> None:
    train = synth_table.subset("synth_a", "de").split("train")
    with pytest.raises(
        ValueError, match="needs training rows of the same task in at least one other cell line"
    ):
        make_predictor("core_voting_transfer", synth_kg).fit(train)


def test_transfer_uses_other_line_outcomes(synth_table: QueryTable, synth_kg: KnowledgeGraph) -> None:
    """Context = a noisy replicate screen in another line (15% of labels flipped), train and test pairs alike.

    The transfer model must learn from the training rows how far to trust the replicate and so rank test
    perturbations far better than the KG-only model; the replicate's test labels are never the true ones.
    """
    sub = synth_table.subset("synth_a", "de")
    train, test = sub.split("train"), sub.split("test")
    rng = np.random.default_rng(0)
    replicate = sub.frame.assign(cell_line="replicate", split="train")
    flip = rng.random(len(replicate)) < 0.15
    replicate["label"] = np.where(flip, 1 - replicate["label"], replicate["label"])
    plain = make_predictor("core_voting", synth_kg).fit(train)
    transfer = make_predictor("core_voting_transfer", synth_kg).fit(train, context=replicate)
    assert "ctx_pair_pos" in transfer.feature_names_ and "ctx_pair_pos" not in plain.feature_names_
    macro = METRICS.get("macro_per_gene_auroc")
    y, g, p = test["label"].to_numpy(), test["gene"].to_numpy(), test["perturbation"].to_numpy()
    s_plain = macro(y, plain.predict_proba(test)[:, 1], g, p, 0.5)
    s_transfer = macro(y, transfer.predict_proba(test)[:, 1], g, p, 0.5)
    assert s_transfer > max(s_plain + 0.1, 0.75)


def test_benchmark_passes_other_lines_as_context(tmp_path: Path) -> None:
    from coreperturb import BenchmarkConfig, run_benchmark
    from coreperturb.errors import CorePerturbError
    from coreperturb.report import write_report, write_run

    methods = "core_voting,core_voting_transfer"
    config = BenchmarkConfig.from_options(methods=methods)
    out = tmp_path / "ok"
    out.mkdir()
    write_run(run_benchmark(config, workdir=out), config, out)
    m = pd.read_csv(out / "metrics.csv")
    per_line = m[(m["metric"] == "macro_per_gene_auroc") & (m["method"] == "core_voting_transfer")]
    assert set(per_line["cell_line"]) >= {"synth_a", "synth_b"} and (per_line["value"] > 0.55).all()
    # examples carry the method and, for the transfer model, its context evidence; strict JSON (no NaN)
    text = (out / "examples.json").read_text()
    examples = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    transfer_ex = [e for e in examples if e["method"] == "core_voting_transfer"]
    assert transfer_ex and all(e["context"] and "context_evidence" in e for e in transfer_ex)
    # core_voting reads the other line too (cross-line by default): its examples show that evidence
    assert all(e["context"] for e in examples if e["method"] == "core_voting")
    write_report(out)
    md = (out / "report.md").read_text()
    assert "core_voting_transfer score" in md and "in synth_b:" in md
    assert "responded like it there" in (out / "report.html").read_text()
    one = BenchmarkConfig.from_options(methods=methods, cell_lines="synth_a")
    (tmp_path / "one").mkdir()
    with pytest.raises(CorePerturbError, match="at least one other cell line"):
        run_benchmark(one, workdir=tmp_path / "one")


def test_context_for_query_lists_contexts_and_measured_responders() -> None:
    genes = [f"g{i}" for i in range(6)]
    ctx = _rows(
        "B",
        [("Q", g, int(g in ("g0", "g1", "g2"))) for g in genes]
        + [("P1", g, int(g in ("g0", "g1", "g2"))) for g in genes]
        + [("P3", g, int(g in ("g0", "g1"))) for g in genes]
        + [("P2", g, int(g == "g5")) for g in genes],
    )
    ev = ContextEvidence.from_frame(ctx, module_k=3, module_self=1.0, top_k=5)
    # target line: P1 made g3 DE, P2 did not; P3 was never measured on g3
    pool = ObservationPool.from_frame(_rows("A", [("P1", "g3", 1), ("P2", "g3", 0), ("P3", "g4", 0)]))
    contexts, similar = ev.for_query("Q", "g3", pool)
    row = contexts.set_index("cell_line").loc["B"]
    assert bool(row["perturbation_observed"]) and row["perturbation_rate"] == pytest.approx(0.5)
    assert row["pair"] == "negative"
    assert contexts.shape[0] == 1
    # P1 responded exactly like Q; P2 not at all (similarity <= 0 is dropped); P3 is not measured on g3
    assert list(similar["related_perturbation"]) == ["P1"]
    assert list(similar["outcome"]) == ["positive"] and similar["similarity"].iloc[0] > 0.5
    # an unseen perturbation and an unknown gene give empty, well-formed views
    contexts, similar = ev.for_query("unseen", "nope", pool)
    assert not bool(contexts["perturbation_observed"].iloc[0]) and contexts["pair"].iloc[0] == "not measured"
    assert similar.empty and list(similar.columns) == ["related_perturbation", "similarity", "outcome"]
