"""The benchmark report's examples: test queries that teach how a method behaves, with their evidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.stages import FittedModels

if TYPE_CHECKING:
    from coreperturb.predictors._llm import LLMPredictor


def benchmark_examples(fitted: FittedModels, preds: pd.DataFrame) -> list[dict[str, object]]:
    """The examples of a benchmark run (``examples.json``): for every model that shows evidence, a true
    positive, a false positive and a true negative of one test gene (:func:`teaching_picks`) with their
    contrastive evidence, and what each LLM method read and answered for the same queries."""
    examples: list[dict[str, object]] = []
    thresholds = fitted.thresholds
    for (line, task, method), model in fitted.models.items():
        if model.shows_evidence:
            rows = preds[
                (preds["cell_line"] == line) & (preds["task"] == task) & (preds["method"] == model.name)
            ].reset_index(drop=True)
            examples.extend(_examples(fitted.kg, rows, model, thresholds.get((line, task, method), 0.5)))
    for ex in examples:
        views = _llm_views(fitted, preds, ex)
        if views:
            ex["llm"] = views
    return examples


def teaching_picks(rows: pd.DataFrame, threshold: float) -> tuple[list[int], list[str]]:
    """Rows that teach how a method behaves on ONE gene: a true positive, a false positive and a true negative
    at the decision ``threshold`` (the highest-scored positive and negative above it, the lowest-scored
    negative below it), from the test gene with the most of these present (ties: more test rows). Falls back
    to whatever roles exist."""
    scores = rows["score"].to_numpy(dtype=np.float64)
    label = rows["label"].to_numpy()
    best: tuple[int, int, list[int], list[str]] | None = None
    for _, idx in rows.groupby("gene", observed=True, sort=True).indices.items():
        idx = np.asarray(idx)
        ok = idx[~np.isnan(scores[idx])]
        above, below = ok[scores[ok] >= threshold], ok[scores[ok] < threshold]
        picks, roles = [], []
        for role, cand, high in (
            ("true positive", above[label[above] == 1], True),
            ("false positive", above[label[above] == 0], True),
            ("true negative", below[label[below] == 0], False),
        ):
            if len(cand):
                picks.append(int(cand[np.argmax(scores[cand])] if high else cand[np.argmin(scores[cand])]))
                roles.append(role)
        key = (len(picks), len(idx))
        if picks and (best is None or key > best[:2]):
            best = (*key, picks, roles)
    return (best[2], best[3]) if best is not None else ([], [])


def _examples(
    kg: KnowledgeGraph, rows: pd.DataFrame, model: Any, threshold: float = 0.5
) -> list[dict[str, object]]:
    """Test queries that teach (for the report): on one gene, a true positive, a false positive and a true
    negative of ``model`` at its threshold (:func:`teaching_picks`), each with its contrastive evidence and
    the KG links behind it. For a model fitted with context, also the query's context evidence."""
    pick, roles = teaching_picks(rows, threshold)
    if not pick:
        return []
    scores = rows["score"].to_numpy(dtype=np.float64)
    label = rows["label"].to_numpy()
    ev, _ = model.evidence(rows.iloc[pick])
    out: list[dict[str, object]] = []
    for j, (i, role) in enumerate(zip(pick, roles, strict=True)):
        table = ev.for_query(j, kg=kg, top=5, paths=2)
        extra: dict[str, object] = {}
        if model.context_ is not None:
            contexts, similar = model.context_evidence(
                str(rows["perturbation"].iat[i]), str(rows["gene"].iat[i]), top=5
            )
            extra = {
                "context": contexts.round(4).to_dict(orient="records"),
                "context_evidence": similar.round(4).to_dict(orient="records"),
            }
        out.append(
            {
                "method": model.name,
                "role": role,
                "threshold": float(threshold),
                "cell_line": str(rows["cell_line"].iat[i]),
                "task": str(rows["task"].iat[i]),
                "perturbation": str(rows["perturbation"].iat[i]),
                "gene": str(rows["gene"].iat[i]),
                "label": int(label[i]),
                "score": float(scores[i]),
                "evidence": table.round(4).to_dict(orient="records"),
                **extra,
            }
        )
    return out


def _llm_views(fitted: FittedModels, preds: pd.DataFrame, ex: dict[str, object]) -> list[dict[str, object]]:
    """What each LLM method read and answered for an example query: prompt, rationale, P(yes), score."""
    out: list[dict[str, object]] = []
    line, task = str(ex["cell_line"]), str(ex["task"])
    for (mline, mtask, method), model in fitted.models.items():
        if mline != line or mtask != task or not model.uses_llm:
            continue
        hit = preds[
            (preds["cell_line"] == line)
            & (preds["task"] == task)
            & (preds["method"] == method)
            & (preds["perturbation"] == ex["perturbation"])
            & (preds["gene"] == ex["gene"])
        ]
        if hit.empty:
            continue
        r = hit.iloc[0]
        q = pd.DataFrame(
            {"cell_line": [line], "task": [task], "perturbation": [ex["perturbation"]], "gene": [ex["gene"]]}
        )
        msgs = cast("LLMPredictor", model).messages(q)[0]
        out.append(
            {
                "method": method,
                "prompt": "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in msgs),
                "rationale": None if pd.isna(r.get("rationale")) else str(r.get("rationale")),
                "p_yes": None if pd.isna(r.get("p_yes")) else float(r["p_yes"]),
                "score": None if pd.isna(r["score"]) else float(r["score"]),
                "error": None if pd.isna(r.get("error")) else str(r.get("error")),
            }
        )
    return out


__all__ = ["benchmark_examples", "teaching_picks"]
