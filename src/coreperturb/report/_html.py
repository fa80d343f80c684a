"""``coreperturb report RUN_DIR``: a self-contained HTML report (and Markdown) of a benchmark run."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coreperturb._escape import md_cell, md_text
from coreperturb._files import atomic_write_bytes, atomic_write_text
from coreperturb.errors import CorePerturbError
from coreperturb.evaluation._metrics import metric_info, per_group_auroc, reliability_bins


def _label(metric: str) -> str:
    return metric_info(metric).label


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
    "excess_de_at_10",
    "excess_de_at_50",
    "precision_at_10",
    "per_gene_recall_at_10",
    "coverage",
    "coverage_min_prior_decile",
    "uncertain_rate",
    "specific_precision_at_10",
)

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coreperturb report — {{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1180px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; } th { background: #f3f3f3; }
td.l, th.l, .ev td, .ev th { text-align: left; } img { max-width: 100%; } .pos { color: #b2182b; } .neg { color: #2166ac; }
.metrics td, .metrics th { white-space: nowrap; } .meta, .note { color: #555; font-size: .9em; }
.warn { color: #8a4b00; background: #fff4e0; border-left: 3px solid #d08000; padding: .3em .6em; }
.llm { table-layout: fixed; width: 100%; } .llm td { text-align: left; vertical-align: top; }
.llm pre { white-space: pre-wrap; font-size: .85em; margin: 0; max-height: 24em; overflow: auto; }
.role { font-weight: normal; color: #555; }
</style></head><body>
<h1>coreperturb report — {{ title }}</h1>
<p class="meta">{{ meta }}</p>
<h2>Metrics (test split)</h2>
<p class="note">{{ metric_note }}</p>
{% for w in warnings %}<p class="warn">warning: {{ w }}</p>{% endfor %}
{{ metrics_table }}
{% if ci_table %}<h3>95% bootstrap confidence intervals (resampling test perturbations)</h3>
{{ ci_table }}{% endif %}
{% for fig in figures %}<h2>{{ fig.title }}</h2><p>{{ fig.caption }}</p><img alt="{{ fig.title }}" src="data:image/png;base64,{{ fig.b64 }}">
{% endfor %}
<h2>Example queries with their contrastive evidence</h2>
<p class="note">For one readout gene: a true positive, a false positive and a true negative of the method at
its decision threshold, each with the related training perturbations that did (positive evidence) and did not
(negative evidence) change that gene, and the KG links that relate them.</p>
{% for ex in examples %}
<h3>{{ ex.perturbation }} → {{ ex.gene }} ({{ ex.cell_line }}, {{ ex.task }}) <span class="role">— {{ ex.role_text }}: label {{ ex.label }}, {{ ex.method }} score {{ "%.3f"|format(ex.score) }}{% if ex.threshold is not none %} (threshold {{ "%.3f"|format(ex.threshold) }}){% endif %}</span></h3>
{{ ex.table }}{% if ex.context_table %}
<p>{{ ex.perturbation }} in the other cell lines (training rows), and {{ ex.cell_line }} perturbations measured on {{ ex.gene }} that responded like it there:</p>
{{ ex.context_table }}{{ ex.context_evidence_table }}{% endif %}{% if ex.llm_table %}
<p>What the LLM methods read and answered for this query:</p>
{{ ex.llm_table }}{% endif %}
{% else %}<p>No examples (run core_voting to get them).</p>{% endfor %}
</body></html>
"""


def _fig_b64(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


METRIC_NOTE = (
    "The key metric is the per-gene AUROC: for each readout gene with both classes, how well the scores rank "
    "the test perturbations that change it above those that do not, averaged over genes (a score that is "
    "constant within a gene gets exactly 0.5). Pooled AUROC ranks all pairs together, so it is high even for "
    "gene_frequency, which only knows which genes respond often and says nothing about which perturbation "
    "changes a given gene. The ranking columns read results as a user does: excess DE@10 is, over each "
    "perturbation's 10 top-ranked genes (by p_de − p_prior), how many more respond than their base rates "
    "predict, per listed gene; any ranking from gene-level information alone scores about 0, and so does "
    "gene_frequency. P@10: DE genes among the 10 genes with the highest score; per-gene R@10: the share of a "
    "gene's DE perturbations among its 10 top-scored perturbations. Call coverage: the share of test pairs "
    "whose conformal call (DE / not DE / uncertain at 0.9) holds the truth, overall and in the worst decile "
    "of the gene prior; uncertain calls are the price of that guarantee. Specific P@10 (DE genes with prior < "
    "0.2 in the top 10) is kept for comparison only: a threshold on the prior rewards genes just under it. "
    "MEAN rows average the cell lines."
)


def _fmt(v: float, metric: str) -> str:
    if pd.isna(v):
        return "—"
    return f"{int(v)}" if metric.startswith("n_") else f"{v:.3f}"


def _with_mean(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics plus a ``MEAN`` cell line per (task, method) when there are several lines: the headline
    figure (e.g. the mean per-gene AUROC over lines) is on the page."""
    m = metrics[metrics["metric"].isin(TABLE_METRICS)]
    if m["cell_line"].nunique() < 2:
        return m
    mean = m.groupby(["task", "method", "metric"], sort=False, observed=True)["value"].mean().reset_index()
    mean.insert(0, "cell_line", "MEAN")
    return pd.concat([m, mean], ignore_index=True)


def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Wide table: rows (cell_line, task, method), a column per metric (values only, short headers; the CIs
    are in :func:`ci_table`, so the table fits a 1280 px page), and MEAN rows over cell lines."""
    m = _with_mean(metrics).copy()
    m["text"] = [_fmt(v, k) for v, k in zip(m["value"], m["metric"], strict=True)]
    wide = m.pivot_table(
        index=["cell_line", "task", "method"], columns="metric", values="text", aggfunc="first", sort=False
    )
    wide = wide[[c for c in TABLE_METRICS if c in wide.columns]].rename(columns=_label)
    wide.columns.name = None
    return wide


def ci_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The 95% bootstrap CIs as ``low – high`` per metric (empty when the run had no bootstrap)."""
    m = metrics[metrics["metric"].isin(TABLE_METRICS)].dropna(subset=["ci_low", "ci_high"]).copy()
    if m.empty:
        return pd.DataFrame()
    m["text"] = [f"{lo:.3f} – {hi:.3f}" for lo, hi in zip(m["ci_low"], m["ci_high"], strict=True)]
    wide = m.pivot_table(
        index=["cell_line", "task", "method"], columns="metric", values="text", aggfunc="first", sort=False
    )
    wide = wide[[c for c in TABLE_METRICS if c in wide.columns]].rename(columns=_label)
    wide.columns.name = None
    return wide


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (index levels become the first columns); every text cell is inert
    (:func:`coreperturb._escape.md_cell`: no HTML, links, images or table breaks)."""
    flat = df.reset_index() if df.index.name or any(df.index.names) else df
    cols = [md_text(c) for c in flat.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in flat.itertuples(index=False)]
    return "\n".join(lines)


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
        axes[r, 1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    figs.append(
        {
            "title": "ROC and precision-recall curves",
            "caption": "Pooled over all test queries of each cell line and task (one legend for both panels).",
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
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
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
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8, rotation=20, ha="right")
    ax.axhline(0.5, ls=":", c="grey")
    ax.set(ylabel="AUROC within gene", title="Per-gene AUROC (genes with both classes)")
    fig.tight_layout()
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
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
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


def _llm_table(views: object) -> str:
    """The LLM methods side by side for one example: prompt, rationale, P(yes) and calibrated score."""
    if not isinstance(views, list) or not views:
        return ""
    import html as _h

    def num(v: object) -> str:
        return "—" if v is None else f"{float(v):.3f}"  # type: ignore[arg-type]

    head = "".join(f"<th>{_h.escape(str(v['method']))}</th>" for v in views)
    rows = [
        ("prompt (as asked first)", [f"<pre>{_h.escape(str(v.get('prompt', '')))}</pre>" for v in views]),
        (
            "rationale",
            [_h.escape(str(v.get("rationale") or "(none: run with --reasoning-tokens N)")) for v in views],
        ),
        ("P(yes), raw", [num(v.get("p_yes")) for v in views]),
        ("score (calibrated)", [num(v.get("score")) for v in views]),
    ]
    if any(v.get("error") for v in views):
        rows.append(("error", [_h.escape(str(v.get("error") or "")) for v in views]))
    body = "".join(
        f"<tr><th class='l'>{k}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" for k, cells in rows
    )
    return f"<table class='llm'><tr><th style='width:9em'></th>{head}</tr>{body}</table>"


def _role_text(ex: dict[str, Any]) -> str:
    if ex.get("role"):
        return str(ex["role"])
    return "positive" if ex.get("label") == 1 else "negative"


def build_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained, images inline) and ``report.md`` (+ ``report_files/``).

    Returns:
        The two paths.
    """
    import jinja2
    from markupsafe import Markup

    run_dir = Path(run_dir)
    metrics, pred, examples, manifest = _read(run_dir)
    # runs written before examples recorded their method only had core_voting examples
    examples = [{"method": "core_voting", **ex} for ex in examples]
    table = metrics_table(metrics)
    cis = ci_table(metrics)
    figs = _figures(pred, metrics)
    meta = (
        f"run {run_dir.name}; coreperturb {manifest.get('packages', {}).get('coreperturb', '?')}; "
        f"config {str(manifest.get('config_hash', '?'))[:12]}; seed {manifest.get('seeds', {}).get('seed', '?')}"
    )
    ex_views = []
    for ex in examples[:6]:
        ev = pd.DataFrame(ex.get("evidence", []))
        table_html = "<p>no related evidence</p>"
        if not ev.empty:
            # every cell escaped by pandas; then the (fixed) evidence labels coloured
            table_html = ev.to_html(index=False, escape=True, classes="ev")
            for e in ("positive", "negative"):
                cls = "pos" if e == "positive" else "neg"
                table_html = table_html.replace(f"<td>{e}</td>", f'<td><span class="{cls}">{e}</span></td>')
        ex_views.append(
            {
                **ex,
                "threshold": ex.get("threshold"),
                "role_text": _role_text(ex),
                "table": Markup(table_html),
                "context_table": Markup(_records_html(ex.get("context"))),
                "context_evidence_table": Markup(_records_html(ex.get("context_evidence"))),
                "llm_table": Markup(_llm_table(ex.get("llm"))),
            }
        )
    html = (
        jinja2.Environment(autoescape=True)  # names from users' tables are escaped everywhere
        .from_string(_HTML)
        .render(
            title=run_dir.name,
            meta=meta,
            metric_note=METRIC_NOTE,
            warnings=manifest.get("warnings", []),
            metrics_table=Markup(table.to_html(classes="metrics", escape=True)),
            ci_table=Markup(cis.to_html(classes="metrics", escape=True)) if not cis.empty else "",
            figures=figs,
            examples=ex_views,
        )
    )
    html_path = run_dir / "report.html"
    atomic_write_text(html_path, html)
    files = run_dir / "report_files"
    files.mkdir(exist_ok=True)
    md = [
        f"# coreperturb report — {md_text(run_dir.name)}",
        "",
        md_text(meta),
        "",
        "## Metrics (test split)",
        "",
        METRIC_NOTE,
        "",
        *[f"> **warning:** {md_text(str(w))}\n" for w in manifest.get("warnings", [])],
    ]
    md += [markdown_table(table), ""]
    if not cis.empty:
        md += [
            "### 95% bootstrap confidence intervals (resampling test perturbations)",
            "",
            markdown_table(cis),
            "",
        ]
    for k, fig in enumerate(figs):
        name = f"fig{k + 1}.png"
        atomic_write_bytes(files / name, base64.b64decode(fig["b64"]))
        md += [f"## {fig['title']}", "", fig["caption"], "", f"![{fig['title']}](report_files/{name})", ""]
    md += ["## Example queries", ""]
    for ex in examples[:6]:
        thr = f" (threshold {ex['threshold']:.3f})" if ex.get("threshold") is not None else ""
        md += [
            f"### {md_text(ex['perturbation'])} → {md_text(ex['gene'])} ({md_text(ex['cell_line'])}, "
            f"{ex['task']}): {_role_text(ex)}",
            "",
            f"label {ex['label']}, {md_text(ex['method'])} score {ex['score']:.3f}{thr}",
            "",
        ]
        ev = pd.DataFrame(ex.get("evidence", []))
        if not ev.empty:
            md += [markdown_table(ev.head(10)), ""]
        for c in ex.get("context", []):
            rate = c.get("perturbation_rate")
            seen = f"positive rate {rate:.3f}" if isinstance(rate, float) else "not observed"
            md.append(
                f"- in {md_text(c['cell_line'])}: {md_text(ex['perturbation'])} {seen}; pair {md_text(c['pair'])}"
            )
        for e in ex.get("context_evidence", []):
            md.append(
                f"- responded alike: {md_text(e['related_perturbation'])} (similarity {e['similarity']:.3f}), "
                f"{e['outcome']} on {md_text(ex['gene'])}"
            )
        for v in ex.get("llm", []) or []:
            p = "—" if v.get("p_yes") is None else f"{v['p_yes']:.3f}"
            why = md_text(v.get("rationale") or "(none)")
            md += ["", f"**{md_text(v['method'])}**: P(yes) {p}; rationale: {why}", ""]
            prompt = str(v.get("prompt", ""))
            fence = "`" * max(3, 1 + max((len(r) for r in re.findall("`+", prompt)), default=0))
            md += [fence + "text", prompt, fence]
        md.append("")
    md_path = run_dir / "report.md"
    atomic_write_text(md_path, "\n".join(md) + "\n")
    return html_path, md_path


def _records_html(records: object) -> str:
    """HTML table of a list of records (empty string when there are none)."""
    if not isinstance(records, list) or not records:
        return ""
    return pd.DataFrame(records).to_html(index=False, classes="ev", na_rep="", escape=True)


__all__ = ["build_report", "ci_table", "markdown_table", "metrics_table"]
