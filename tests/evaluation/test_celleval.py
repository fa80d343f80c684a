"""The cell-eval export: pdex-style DE tables that cell-eval reads back and scores with its own metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coreperturb.evaluation._celleval import cell_eval_scores, de_tables
from coreperturb.evaluation._metrics import METRICS, ranking_metric


def _predictions(seed: int = 0, n_p: int = 8, n_g: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = np.repeat([f"P{i}" for i in range(n_p)], n_g)
    g = np.tile([f"G{j}" for j in range(n_g)], n_p)
    y = (rng.uniform(size=len(p)) < 0.3).astype(int)
    score = np.clip(0.3 + 0.3 * y + rng.normal(0, 0.15, len(p)), 0.01, 0.99)
    de = pd.DataFrame(
        {
            "cell_line": "x",
            "perturbation": p,
            "gene": g,
            "task": "de",
            "method": "m",
            "score": score,
            "label": y,
        }
    )
    de["effect"] = np.log(de["score"] / 0.3)
    pos = de[de["label"] == 1]
    up = (rng.uniform(size=len(pos)) < 0.5).astype(int)
    direction = pos.assign(
        task="dir", label=up, score=np.clip(0.5 + 0.4 * (2 * up - 1) + rng.normal(0, 0.2, len(pos)), 0, 1)
    )
    return pd.concat([de, direction], ignore_index=True)


def test_de_tables_encode_calls_and_ranking() -> None:
    preds = _predictions()
    de = preds[preds["task"] == "de"]
    real, pred = de_tables(de, threshold=0.5, ranking="p_de", direction=preds[preds["task"] == "dir"])
    assert (
        list(real.columns)
        == list(pred.columns)
        == ["target", "feature", "log2_fold_change", "p_value", "fdr"]
    )
    merged = de.merge(pred, left_on=["perturbation", "gene"], right_on=["target", "feature"])
    # significant in cell-eval's sense exactly when the model calls the gene DE
    assert ((merged["fdr"] < 0.05) == (merged["score"] >= 0.5)).all()
    # within a perturbation, -log10(fdr) orders genes as p_de does
    for _, grp in merged.groupby("perturbation"):
        order = grp.sort_values("score")["fdr"].to_numpy()
        assert (np.diff(order) <= 1e-15).all()
    r = real.merge(de, left_on=["target", "feature"], right_on=["perturbation", "gene"])
    assert ((r["fdr"] == 0) == (r["label"] == 1)).all() and set(
        r.loc[r["label"] == 1, "log2_fold_change"]
    ) <= {-1.0, 1.0}


def test_cell_eval_reads_the_tables_and_agrees_with_our_metrics() -> None:
    pytest.importorskip("cell_eval", reason="cell-eval is not installed: pip install 'coreperturb[celleval]'")
    preds = _predictions(1)
    scores = cell_eval_scores(preds, {("x", "de", "m"): 0.5}).set_index(["ranking", "metric"])["value"]
    de = preds[preds["task"] == "de"]
    y, s = de["label"].to_numpy(), de["score"].to_numpy()
    g, p = de["gene"].to_numpy(), de["perturbation"].to_numpy()
    # cell-eval's per-perturbation ROC / PR AUC of -log10(fdr) are our per-perturbation AUROC / AUPRC of p_de
    assert scores[("p_de", "roc_auc")] == pytest.approx(
        METRICS.get("macro_per_perturbation_auroc")(y, s, g, p, 0.5)
    )
    auprc = ranking_metric("macro_per_perturbation_auprc", y, s, g, p, np.zeros_like(s), s)
    assert scores[("p_de", "pr_auc")] == pytest.approx(auprc)
    # precision of the top-10 predicted DE genes against the real DE genes, as cell-eval defines it: both
    # lists cut to k = min(10, predicted DE genes); the real list (tied |lfc|) in the table's shuffled order
    real, _ = de_tables(de, 0.5, "p_de")
    want = []
    for pert, grp in de.groupby("perturbation"):
        called = grp[grp["score"] >= 0.5].sort_values("score", ascending=False)["gene"].tolist()
        real_de = real.loc[(real["target"] == pert) & (real["fdr"] < 0.05), "feature"].tolist()
        k = min(10, len(called))
        want.append(len(set(called[:k]) & set(real_de[:k])) / k if k and real_de else 0.0)
    assert scores[("p_de", "precision_at_10")] == pytest.approx(np.mean(want))
    assert 0.5 < scores[("p_de", "de_direction_match")] <= 1.0
    assert {r for r, _ in scores.index} == {"p_de", "effect"}


def test_missing_cell_eval_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from coreperturb.errors import CorePerturbError

    real_import = builtins.__import__

    def fake(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("cell_eval"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(CorePerturbError, match=r"pip install 'coreperturb\[celleval\]'"):
        cell_eval_scores(_predictions(), {})
