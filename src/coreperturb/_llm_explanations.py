"""What an LLM method reads and answers for one pair: :func:`explain_llm` → :class:`LLMExplanation`
(``coreperturb explain --method core_reasoning|llm_isolated``)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pandas as pd

from coreperturb._config import BenchmarkConfig
from coreperturb._deprecation import keyword_options
from coreperturb._explanations import fit_here, model_for, resolve_pair
from coreperturb.errors import CorePerturbError
from coreperturb.predictors._base import make_predictor
from coreperturb.predictors._llm import LLMPredictor
from coreperturb.stages import FittedModels


@dataclass(frozen=True)
class LLMExplanation:
    """What an LLM method read and answered for one (perturbation, gene).

    Attributes:
        perturbation, gene, cell_line, task, method: The query and the method.
        messages: The chat prompt (``role`` / ``content`` dicts).
        reasoning_tokens: The rationale length asked for (0 = none).
        rationale: What the model wrote before answering (``None`` without reasoning).
        p_yes: P(yes) read from the answer (NaN if the call failed).
        score_method: How P(yes) was read (``logprobs`` or ``verbal``).
        score: The method's score (calibrated where the model was fitted with calibration).
        calibrated: Whether ``score`` is calibrated on training queries.
        error: Why the call failed (``None`` when it did not).
    """

    perturbation: str
    gene: str
    cell_line: str
    task: str
    method: str
    messages: list[dict[str, str]]
    reasoning_tokens: int
    rationale: str | None
    p_yes: float
    score_method: str | None
    score: float
    calibrated: bool
    error: str | None


@keyword_options
def explain_llm(
    method: str,
    perturbation: str,
    gene: str,
    *,
    models: FittedModels | None = None,
    config: BenchmarkConfig | None = None,
    cell_line: str | None = None,
    task: str = "de",
    reasoning_tokens: int | None = None,
    response_cache: Path | None = None,
) -> LLMExplanation:
    """Ask an LLM method about one pair and show what it read (the prompt), wrote and answered.

    Args:
        method: ``core_reasoning`` or ``llm_isolated``.
        perturbation: The perturbation of the query.
        gene: The readout gene of the query.
        cell_line: The cell line (default: the model's first).
        task: ``de`` or ``dir``.
        models: A fitted model holding ``method``; without one, the method is built with the LLM settings of
            ``config`` (uncalibrated) on the training split of ``config``'s data.
        config: The data, KG and LLM settings without ``models``.
        reasoning_tokens: Rationale length (default: the model's).
        response_cache: The shared LLM response cache (default: the user cache directory).

    Raises:
        CorePerturbError: Unknown names or no such LLM model.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if models is not None:
            line = cell_line or models.cell_lines[0]
            pred = model_for(models, line, task, (method,), method)
            if not pred.uses_llm:
                raise CorePerturbError(f"{method} asks no LLM")
            perturbation, gene = resolve_pair(models, perturbation, gene)
        else:
            cfg = config or BenchmarkConfig()
            _, kg, line, perturbation, gene, train = fit_here(
                cfg, cell_line, task, perturbation, gene, all_lines=False
            )
            pred = make_predictor(
                method, kg, llm=cfg.fit.llm_settings(), calibration_queries=0, seed=cfg.fit.seed
            ).fit(train)
        pred.set_params(result_store=Path(tmp) / "explain.sqlite", response_cache=response_cache)
        if reasoning_tokens is not None:
            pred.set_params(reasoning_tokens=reasoning_tokens)
        q = pd.DataFrame(
            {"cell_line": [line], "task": [task], "perturbation": [perturbation], "gene": [gene]}
        )
        st = pred.score(q).iloc[0]
        msgs = cast(LLMPredictor, pred).messages(q)[0]
    err = st.get("error")
    return LLMExplanation(
        perturbation=perturbation,
        gene=gene,
        cell_line=line,
        task=task,
        method=method,
        messages=msgs,
        reasoning_tokens=int(pred.get_params().get("reasoning_tokens", 0)),
        rationale=None if pd.isna(st.get("rationale")) else str(st.get("rationale")),
        p_yes=float(st["p_yes"]) if pd.notna(st.get("p_yes")) else float("nan"),
        score_method=None if pd.isna(st.get("score_method")) else str(st.get("score_method")),
        score=float(st["score"]) if pd.notna(st["score"]) else float("nan"),
        calibrated=getattr(pred, "calibrator_", None) is not None,
        error=None if err is None or pd.isna(err) else str(err),
    )


__all__ = ["LLMExplanation", "explain_llm"]
