"""Sampling query rows so that the metrics stay computable."""

from __future__ import annotations

import numpy as np
import pandas as pd


def stratified_by_gene(frame: pd.DataFrame, n: int, seed: int = 0, per_gene: int = 20) -> pd.DataFrame:
    """About ``n`` rows sampled gene by gene so per-gene AUROC is computable.

    Genes with both classes are taken in random order; from each, ``per_gene`` rows are drawn at random
    but with at least one positive and one negative. Returns rows in the input order.
    """
    if n >= len(frame):
        return frame
    rng = np.random.default_rng(seed)
    both = frame.groupby("gene", observed=True)["label"].agg(lambda s: s.nunique() == 2)
    genes = rng.permutation(np.asarray(both.index[both.to_numpy()], dtype=object))
    picked: list[int] = []
    by_gene = {g: idx for g, idx in frame.groupby("gene", observed=True).indices.items()}
    lab = frame["label"].to_numpy()
    for g in genes:
        if len(picked) >= n:
            break
        idx = by_gene[g]
        k = min(per_gene, len(idx), n - len(picked))
        if k < 2:
            break
        pos, neg = idx[lab[idx] == 1], idx[lab[idx] == 0]
        first = [rng.choice(pos), rng.choice(neg)]
        rest = rng.permutation(np.setdiff1d(idx, first))[: k - 2]
        picked.extend(int(i) for i in [*first, *rest])
    return frame.iloc[sorted(picked)]


__all__ = ["stratified_by_gene"]
