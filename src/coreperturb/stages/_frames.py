"""One method's frame of :data:`coreperturb.stages.GRID_COLUMNS` from its probabilities and evidence counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from coreperturb.predictors._effect import effect_score


def grid_frame(
    base: dict[str, np.ndarray],
    method: str,
    probabilities: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    evidence: tuple[Any, Any],
    *,
    cov_rows: np.ndarray,
    on_target: np.ndarray,
    calls: tuple[np.ndarray, np.ndarray],
    flag: np.ndarray,
) -> pd.DataFrame:
    """One method's frame of :data:`GRID_COLUMNS` from ``(p_de, p_up, prior, up_rate)`` and the evidence
    counts ``(n_pos, n_neg)``."""
    p_de, p_up, prior, up_rate = probabilities
    n = len(base["gene"])
    n_pos, n_neg = (np.asarray(c, dtype=np.float64) for c in evidence)
    n_ev = n_pos + n_neg
    return pd.DataFrame(
        {
            **base,
            "method": np.full(n, method, dtype=object),
            "p_de": p_de,
            "p_up": p_up,
            "p_prior": prior,
            "excess": p_de - prior,
            "effect": effect_score(p_de, prior, n_ev),
            "p_de_up": p_de * p_up,
            "p_de_down": p_de * (1 - p_up),
            "effect_up": effect_score(p_de * p_up, prior * up_rate, n_ev),
            "effect_down": effect_score(p_de * (1 - p_up), prior * (1 - up_rate), n_ev),
            "excess_up": p_de * p_up - prior * up_rate,
            "excess_down": p_de * (1 - p_up) - prior * (1 - up_rate),
            "n_pos_evidence": n_pos.astype(np.int32),
            "n_neg_evidence": n_neg.astype(np.int32),
            "kg_coverage": np.asarray(cov_rows, dtype=np.float32),
            "on_target": on_target,
            "call": calls[0],
            "call_dir": calls[1],
            "flag": flag,
        }
    )


__all__ = ["grid_frame"]
