"""What a blended line's answer is made of, for the blend tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coreperturb.data import QueryTable
from coreperturb.stages import FittedModels, predict
from coreperturb.stages._unscreened import measured


def own_and_others(
    alone: FittedModels, blend: FittedModels, table: QueryTable
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """synth_a's first 2,000 test queries, its own answer (``alone``: no blend), synth_b's answer as ``blend``
    reads it (its measurement where its screen asked the pair, read as ``blend`` reads measurements; its own
    model elsewhere) and that measurement (NaN: not measured), all on the table's scale."""
    q = table.split("test")
    q = q.loc[q["cell_line"] == "synth_a"].head(2000).reset_index(drop=True)
    own = predict(alone, q)["score_sample"].to_numpy()
    other = predict(alone, q.assign(cell_line="synth_b"))["score_sample"].to_numpy()
    seen = measured(
        blend, "synth_b", "de", q["perturbation"].to_numpy(), q["gene"].to_numpy(), target="synth_a"
    )
    assert np.isfinite(seen).any()
    return q, own, np.where(np.isfinite(seen), seen, other), seen
