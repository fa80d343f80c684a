"""Small shared helpers."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def positions(index: pd.Index, values: Iterable[object]) -> np.ndarray:
    """Positions of ``values`` in ``index`` (-1 where absent); ``index`` must be unique."""
    return np.asarray(
        index.get_indexer(pd.Index(list(values) if not isinstance(values, pd.Index) else values))
    )
