"""``coreperturb report RUN_DIR``: a self-contained HTML report (and Markdown) of a benchmark run."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coreperturb.errors import CorePerturbError
from coreperturb.evaluate.metrics import per_group_auroc, reliability_bins

TABLE_METRICS = (
    "macro_per_gene_auroc",
    "n_genes_per_gene_auroc",
    "auroc",
    "auprc",
    "f1",
    "ece",
    "brier",
    "pred_pos_rate",
    "true_pos_rate",
)

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coreperturb report — {{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; } th { background: #f3f3f3; }
td.l, th.l, .ev td { text-align: left; } img { max-width: 100%; } .pos { color: #b2182b; } .neg { color: #2166ac; }
.meta { color: #666; font-size: .85em; }
</style></head><body>
<h1>coreperturb report — {{ title }}</h1>
<p class="meta">{{ meta }}</p>
<h2>Metrics (test split; 95% bootstrap CI over perturbations where computed)</h2>
{{ metrics_table }}
{% for fig in figures %}<h2>{{ fig.title }}</h2><p>{{ fig.caption }}</p><img alt="{{ fig.title }}" src="data:image/png;base64,{{ fig.b64 }}">
{% endfor %}
<h2>Example queries with their contrastive evidence</h2>
{% for ex in examples %}
<h3>{{ ex.perturbation }} → {{ ex.gene }} ({{ ex.cell_line }}, {{ ex.task }}): label {{ ex.label }}, {{ ex.method }} score {{ "%.3f"|format(ex.score) }}</h3>
{{ ex.table }}{% if ex.context_table %}
<p>{{ ex.perturbation }} in the other cell lines (training rows), and {{ ex.cell_line }} perturbations measured on {{ ex.gene }} that responded like it there:</p>
{{ ex.context_table }}{{ ex.context_evidence_table }}{% endif %}
{% else %}<p>No examples (run core_voting to get them).</p>{% endfor %}
</body></html>
"""


def _fig_b64(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(v: float, lo: float, hi: float, metric: str) -> str:
    if pd.isna(v):
        return "—"
    if metric.startswith("n_"):
        return f"{int(v)}"
    s = f"{v:.3f}"
    if pd.notna(lo) and pd.notna(hi):
        s += f" [{lo:.3f}, {hi:.3f}]"
    return s


def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Wide table: rows (cell_line, task, method), columns metrics formatted as ``value [lo, hi]``."""
    m = metrics[metrics["metric"].isin(TABLE_METRICS)].copy()
    m["text"] = [
        _fmt(v, lo, hi, k)
        for v, lo, hi, k in zip(m["value"], m["ci_low"], m["ci_high"], m["metric"], strict=True)
    ]
    wide = m.pivot_table(
        index=["cell_line", "task", "method"], columns="metric", values="text", aggfunc="first", sort=False
    )
    return wide[[c for c in TABLE_METRICS if c in wide.columns]]


def _figures(pred: pd.DataFrame, metrics: pd.DataFrame) -> list[dict[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    figs = []
    units = list(pred.groupby(["cell_line", "task"], sort=True, observed=True))
    methods = list(pd.unique(pred["method"]))
    fig, axes = plt.subplots(len(units), 2, figsize=(10, 3.8 * len(units)), squeeze=False)
    for r, ((line, task), grp) in enumerate(units):
        for method in methods:
            g = grp[grp["method"] == method]
            if g["label"].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(g["label"], g["score"])
            prec, rec, _ = precision_recall_curve(g["label"], g["score"])
            axes[r, 0].plot(fpr, tpr, label=method)
            axes[r, 1].plot(rec, prec, label=method)
        axes[r, 0].plot([0, 1], [0, 1], ls=":", c="grey")
        axes[r, 0].set(
            title=f"ROC — {line}/{task}", xlabel="false positive rate", ylabel="true positive rate"
        )
        axes[r, 1].set(title=f"PR — {line}/{task}", xlabel="recall", ylabel="precision")
        axes[r, 0].legend(fontsize=8)
    figs.append(
        {
            "title": "ROC and precision-recall curves",
            "caption": "Pooled over all test queries of each cell line and task.",
            "b64": _fig_b64(fig),
        }
    )

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for method in methods:
        g = pred[pred["method"] == method]
        rb = reliability_bins(g["label"].to_numpy(), g["score"].to_numpy())
        rb = rb[rb["count"] > 0]
        ax.plot(rb["mean_pred"], rb["frac_pos"], marker="o", label=method)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(
        xlabel="mean predicted probability (10 bins)",
        ylabel="observed positive rate",
        title="Reliability diagram",
    )
    ax.legend(fontsize=8)
    figs.append(
        {
            "title": "Calibration",
            "caption": "Reliability diagram pooled over all units; the diagonal is perfect calibration.",
            "b64": _fig_b64(fig),
        }
    )

    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(methods)), 4))
    data, labels = [], []
    for method in methods:
        g = pred[pred["method"] == method]
        per = per_group_auroc(
            g["label"].to_numpy(),
            g["score"].to_numpy(),
            (g["cell_line"].astype(str) + "|" + g["gene"].astype(str)).to_numpy(),
        )
        data.append(per.dropna().to_numpy())
        labels.append(f"{method}\n(n={len(per.dropna())})")
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.axhline(0.5, ls=":", c="grey")
    ax.set(ylabel="AUROC within gene", title="Per-gene AUROC (genes with both classes)")
    figs.append(
        {
            "title": "Distribution of per-gene AUROC",
            "caption": "One point per readout gene and cell line; 0.5 = no ranking of perturbations within the gene.",
            "b64": _fig_b64(fig),
        }
    )

    rates = metrics[metrics["metric"].isin(["pred_pos_rate", "true_pos_rate"])]
    wide = rates.pivot_table(
        index=["cell_line", "task", "method"], columns="metric", values="value", sort=False
    )
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(wide)), 4))
    x = np.arange(len(wide))
    ax.bar(x - 0.2, wide["pred_pos_rate"], width=0.4, label="predicted positive rate")
    ax.bar(x + 0.2, wide["true_pos_rate"], width=0.4, label="true positive rate")
    ax.set_xticks(x, ["/".join(map(str, i)) for i in wide.index], rotation=40, ha="right", fontsize=7)
    ax.legend(fontsize=8)
    ax.set(title="Predicted vs true positive (DE / up) rate at each method's threshold")
    figs.append(
        {
            "title": "Predicted-DE rate vs true rate",
            "caption": "Over-prediction shows as a taller first bar.",
            "b64": _fig_b64(fig),
        }
    )
    return figs


def _read(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]], dict[str, Any]]:
    need = ["metrics.csv", "predictions.parquet"]
    missing = [n for n in need if not (run_dir / n).exists()]
    if missing:
        raise CorePerturbError(f"{run_dir}: not a benchmark run directory (missing {', '.join(missing)})")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    pred = pd.read_parquet(run_dir / "predictions.parquet")
    if "method" not in pred.columns or "score" not in pred.columns:
        raise CorePerturbError(f"{run_dir / 'predictions.parquet'}: expected columns method and score")
    pred = pred[pred["score"].notna()].reset_index(drop=True)  # failed LLM rows have no score to plot
    ex_path, man_path = run_dir / "examples.json", run_dir / "manifest.json"
    examples = json.loads(ex_path.read_text()) if ex_path.exists() else []
    manifest = json.loads(man_path.read_text()) if man_path.exists() else {}
    return metrics, pred, examples, manifest


def build_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained, images inline) and ``report.md`` (+ ``report_files/``).

    Returns:
        The two paths.
    """
    import jinja2

    run_dir = Path(run_dir)
    metrics, pred, examples, manifest = _read(run_dir)
    # runs written before examples recorded their method only had core_voting examples
    examples = [{"method": "core_voting", **ex} for ex in examples]
    table = metrics_table(metrics)
    figs = _figures(pred, metrics)
    meta = (
        f"run {run_dir.name}; coreperturb {manifest.get('packages', {}).get('coreperturb', '?')}; "
        f"config {str(manifest.get('config_hash', '?'))[:12]}; seed {manifest.get('seeds', {}).get('seed', '?')}"
    )
    ex_views = []
    for ex in examples[:6]:
        ev = pd.DataFrame(ex.get("evidence", []))
        if not ev.empty:
            ev["evidence"] = [
                f'<span class="{"pos" if e == "positive" else "neg"}">{e}</span>' for e in ev["evidence"]
            ]
        ex_views.append(
            {
                **ex,
                "table": ev.to_html(index=False, escape=False, classes="ev")
                if not ev.empty
                else "<p>no related evidence</p>",
                "context_table": _records_html(ex.get("context")),
                "context_evidence_table": _records_html(ex.get("context_evidence")),
            }
        )
    html = (
        jinja2.Environment(autoescape=False)
        .from_string(_HTML)
        .render(title=run_dir.name, meta=meta, metrics_table=table.to_html(), figures=figs, examples=ex_views)
    )
    html_path = run_dir / "report.html"
    html_path.write_text(html)
    files = run_dir / "report_files"
    files.mkdir(exist_ok=True)
    md = [
        f"# coreperturb report — {run_dir.name}",
        "",
        meta,
        "",
        "## Metrics",
        "",
        table.reset_index().to_markdown(index=False)
        if _has_tabulate()
        else table.reset_index().to_string(index=False),
        "",
    ]
    for k, fig in enumerate(figs):
        name = f"fig{k + 1}.png"
        (files / name).write_bytes(base64.b64decode(fig["b64"]))
        md += [f"## {fig['title']}", "", fig["caption"], "", f"![{fig['title']}](report_files/{name})", ""]
    md += ["## Example queries", ""]
    for ex in examples[:6]:
        md.append(
            f"- **{ex['perturbation']} → {ex['gene']}** ({ex['cell_line']}, {ex['task']}): label {ex['label']}, "
            f"{ex['method']} score {ex['score']:.3f}"
        )
        for e in ex.get("evidence", [])[:6]:
            md.append(
                f"  - {e['evidence']}: {e['related_perturbation']} (similarity {e['similarity']:.3f}) {e.get('paths', '')}"
            )
        for c in ex.get("context", []):
            rate = c.get("perturbation_rate")
            seen = f"positive rate {rate:.3f}" if isinstance(rate, float) else "not observed"
            md.append(f"  - in {c['cell_line']}: {ex['perturbation']} {seen}; pair {c['pair']}")
        for e in ex.get("context_evidence", []):
            md.append(
                f"  - responded alike: {e['related_perturbation']} (similarity {e['similarity']:.3f}), "
                f"{e['outcome']} on {ex['gene']}"
            )
    md_path = run_dir / "report.md"
    md_path.write_text("\n".join(md) + "\n")
    return html_path, md_path


def _records_html(records: object) -> str:
    """HTML table of a list of records (empty string when there are none)."""
    if not isinstance(records, list) or not records:
        return ""
    return pd.DataFrame(records).to_html(index=False, classes="ev", na_rep="")


def _has_tabulate() -> bool:
    import importlib.util

    return importlib.util.find_spec("tabulate") is not None


__all__ = ["build_report", "metrics_table"]
