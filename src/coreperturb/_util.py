"""Small shared helpers."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(p, eps, 1 - eps)
    return np.asarray(np.log(p / (1 - p)))


def positions(index: pd.Index, values: Iterable[object]) -> np.ndarray:
    """Positions of ``values`` in ``index`` (-1 where absent); ``index`` must be unique."""
    return np.asarray(
        index.get_indexer(pd.Index(list(values) if not isinstance(values, pd.Index) else values))
    )
