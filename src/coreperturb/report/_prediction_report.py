"""``coreperturb report PREDICTIONS``: an HTML + Markdown report of a prediction file of ``coreperturb predict``.

For the perturbations in the file it shows what a biologist reads first: per perturbation, the genes it
changes *specifically* (ranked by excess, ``p_de - p_prior``, only those above the floor), split into up and
down where a direction model exists, each with its call and evidence counts and beside the genes that gene
frequency alone would list (from the model's priors over every readout gene where the model is given); per gene, the perturbations that move it most; and a heatmap of the top perturbations × genes. Names
come from users' files and are escaped everywhere.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from coreperturb._defaults import REPORT_TOP
from coreperturb._deprecation import keyword_options
from coreperturb._escape import md_text
from coreperturb._files import atomic_write_bytes, atomic_write_text
from coreperturb.errors import CorePerturbError

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coreperturb predictions — {{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1180px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
h3 { margin-bottom: .3em; } table { border-collapse: collapse; font-size: .85em; margin: .4em 0; }
th, td { border: 1px solid #ddd; padding: .2em .45em; text-align: right; } th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; } .meta, .note { color: #555; font-size: .9em; }
.side { display: flex; gap: 1.5em; flex-wrap: wrap; align-items: flex-start; } .side > div { flex: 0 1 auto; }
.flag { color: #b35806; font-weight: 600; } img { max-width: 100%; }
</style></head><body>
<h1>coreperturb predictions — {{ title }}</h1>
<p class="meta">{{ meta }}</p>
<p class="note">{{ note }}</p>
{% if flags %}<p class="flag">{{ flags }}</p>{% endif %}
<h2>Per perturbation: specific responders</h2>
{% for p in perturbations %}
<h3>{{ p.name }} <span class="meta">({{ p.line }}, {{ p.method }})</span></h3>
{% if p.flag %}<p class="flag">{{ p.flag }}</p>{% endif %}
{% if p.also %}<p class="note">{{ p.also }}</p>{% endif %}
<div class="side">{% for t in p.tables %}<div><b>{{ t.title }}</b>{{ t.html }}</div>{% endfor %}</div>
{% endfor %}
<h2>Per gene: the perturbations that move it most</h2>
<p class="note">{{ gene_note }}</p>
<div class="side">{% for g in genes %}<div><b>{{ g.title }}</b>{{ g.html }}</div>{% endfor %}</div>
{% if heatmap %}<h2>Excess of the top perturbations on their top genes</h2>
<p class="note">{{ heatmap_caption }}</p><img alt="excess heatmap" src="data:image/png;base64,{{ heatmap }}">{% endif %}
</body></html>
"""

NOTE = (
    "p_de and p_prior are the chance over the line's readout genes (the genome scale; `coreperturb predict` "
    "says so, or that an older model keeps its table's scale). "
    "excess = p_de − p_prior: how much more likely the gene is DE under this perturbation than under a usual "
    "one (p_prior: the gene's DE rate under the training perturbations, on the same scale: what gene frequency "
    "alone predicts). Lists hold only genes with "
    "excess ≥ {floor} and positive evidence (below it, genes did not respond reliably more often than their "
    "priors on held-out training perturbations), so a list may be short: the rest would be guesses. "
    "call: DE / not DE / uncertain at the "
    "model's confidence (conformal; the true answer lies in the call with that probability per prior decile; "
    "DE where p_de reaches the confidence: p_de is calibrated on every gene of held-out training perturbations, "
    "and on PerturbQA's lines no unseen perturbation's gene reaches 0.9, so read p_de itself). "
    "Lists ranked by p_de are mostly genes that respond to any perturbation, so each perturbation's specific "
    "responders stand beside the genes gene frequency would list. n+ / n−: related training perturbations that "
    "made the gene DE / left it unchanged; 0 / 0 means the score rests on the prior and the gene's module."
)


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read a prediction file of ``coreperturb predict`` (.parquet / .csv), or every such file of a folder.

    Raises:
        CorePerturbError: The path holds no prediction file, or one without the predict columns.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted([*path.glob("*.parquet"), *path.glob("*.csv")])
    if not files:
        raise CorePerturbError(f"{path}: no prediction file (.parquet or .csv) found")
    frames = []
    need = {"cell_line", "perturbation", "gene", "method", "p_de", "p_prior"}
    for f in files:
        try:
            df = (
                pd.read_parquet(f)
                if f.suffix == ".parquet"
                else pd.read_csv(f, keep_default_na=False, na_values=[""])
            )
        except (OSError, ValueError) as exc:
            raise CorePerturbError(f"{f}: cannot be read as a prediction file: {exc}") from None
        missing = sorted(need - set(df.columns))
        if missing:
            if path.is_file():
                raise CorePerturbError(
                    f"{f}: not a prediction file of `coreperturb predict` (missing column(s) {', '.join(missing)})"
                )
            continue
        frames.append(df)
    if not frames:
        raise CorePerturbError(f"{path}: no prediction file of `coreperturb predict` found")
    out = pd.concat(frames, ignore_index=True)
    out["flag"] = out["flag"].fillna("").astype(str) if "flag" in out.columns else ""
    if "excess" not in out.columns:  # files of earlier releases
        out["excess"] = out["p_de"] - out["p_prior"]
    # a table a user wrote with the core columns only: what it does not say is absent, not an error
    for col, empty in OPTIONAL_COLUMNS.items():
        if col not in out.columns:
            out[col] = [empty] * len(out)
    if "effect" not in out.columns:
        out["effect"] = np.nan
    return out


OPTIONAL_COLUMNS: dict[str, float | bool | str] = {
    "n_pos_evidence": np.nan,
    "n_neg_evidence": np.nan,
    "on_target": False,
    "call": "",
    "call_dir": "",
    "kg_coverage": np.nan,
}
"""Columns of ``coreperturb predict`` a report can do without (filled as unknown)."""


def _fmt_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p class='note'>none</p>"
    fmt = df.copy()
    for c in fmt.columns:
        if pd.api.types.is_float_dtype(fmt[c]):
            fmt[c] = [("—" if pd.isna(v) else f"{v:.3f}") for v in fmt[c]]
    return fmt.to_html(index=False, escape=True, border=0)


def _markdown(df: pd.DataFrame) -> str:
    from coreperturb.report._html import markdown_table

    fmt = df.copy()
    for c in fmt.columns:
        if pd.api.types.is_float_dtype(fmt[c]):
            fmt[c] = [("—" if pd.isna(v) else f"{v:.3f}") for v in fmt[c]]
    return markdown_table(fmt)


_KEY = {"excess": "excess", "effect": "effect", "up": "excess_up", "down": "excess_down"}


def _ranked(d: pd.DataFrame, rank_by: str, top: int, first: str) -> pd.DataFrame:
    """The ``top`` rows that pass the floor (:data:`coreperturb.stages.MIN_EXCESS`), ranked by
    :func:`coreperturb.stages.rank_key` (rows without a key left out)."""
    from coreperturb.stages._ranking import MIN_EXCESS, passes_floor, rank_key

    key = _KEY[rank_by] if _KEY[rank_by] in d.columns else f"effect_{rank_by}"  # files of earlier releases
    cols = [first, key, "p_de", "p_prior", "n_pos_evidence", "n_neg_evidence"]
    if key != "excess":
        cols.insert(2, "excess")
    if rank_by in ("up", "down"):
        cols.insert(3, "p_up")
    cols += [c for c in ("call", "call_dir") if c in d.columns and d[c].astype(str).ne("").any()]
    d = d.loc[passes_floor(d, MIN_EXCESS, rank_by=rank_by)]  # without excess_up / _down: the DE excess
    k = rank_key(d, rank_by)
    sub = d.assign(_k=k).dropna(subset=["_k"]).sort_values("_k", ascending=False, kind="stable").head(top)
    return sub[cols].rename(columns={"n_pos_evidence": "n+", "n_neg_evidence": "n−"})


def _responders(d: pd.DataFrame, rank_by: str, top: int) -> pd.DataFrame:
    return _ranked(d, rank_by, top, "gene")


def _heatmap(d: pd.DataFrame, perts: list[str], top: int) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    genes: list[str] = []
    per = max(2, min(top // 2, 30 // max(len(perts), 1)))  # every row gets its own columns, 30 at most
    for p in perts:
        own = d[(d["perturbation"] == p) & (d["gene"] != p)].dropna(subset=["excess"])  # not its target
        genes += [g for g in own.nlargest(per, "excess")["gene"] if g not in genes][:per]
    genes = genes[:30]
    if not perts or not genes:
        return ""
    wide = (
        d[d["perturbation"].isin(perts) & d["gene"].isin(genes)]
        .pivot_table(index="perturbation", columns="gene", values="excess", aggfunc="first")
        .reindex(index=perts, columns=genes)
    )
    values = wide.to_numpy(dtype=float)
    vmax = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    fig, ax = plt.subplots(figsize=(max(5.0, 0.32 * len(genes) + 2), max(2.5, 0.32 * len(perts) + 1.2)))
    # grey: the pair is not in the file (a --top file keeps each row's best genes)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#d9d9d9")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(genes)), genes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(perts)), perts, fontsize=7)
    ax.set_xlabel("readout gene")
    ax.set_ylabel("perturbation")
    fig.colorbar(im, ax=ax, label="excess (p_de − the gene's prior)", shrink=0.8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def diverse_picks(
    known: pd.DataFrame, strength: pd.Series, n: int, top: int, *, overlap: float = 0.5, scan: int = 500
) -> tuple[list[tuple[str, str, str]], dict[tuple[str, str, str], list[str]]]:
    """The ``n`` perturbations to show: strongest specific responders first, but one per group of
    perturbations that move the same genes (a protein complex's subunits share their top responders; twelve
    proteasome subunits tell a reader no more than one). A perturbation whose top ``top`` genes by excess
    overlap a shown one's by at least ``overlap`` (Jaccard) is named beside it instead.

    Returns:
        ``(picks, alike)``: the shown ``(cell_line, method, perturbation)`` keys, and for each the
        perturbations named beside it.
    """
    order = list(strength.sort_values(ascending=False, kind="stable").index[:scan])
    cand = known.set_index(["cell_line", "method", "perturbation"]).loc[order].reset_index()
    tops = (
        cand.dropna(subset=["excess"])
        .sort_values("excess", ascending=False, kind="stable")
        .groupby(["cell_line", "method", "perturbation"], sort=False)["gene"]
        .apply(lambda g: frozenset(g.head(top)))
    )
    picks: list[tuple[str, str, str]] = []
    alike: dict[tuple[str, str, str], list[str]] = {}
    for key in order:
        genes = tops.get(key, frozenset())
        twin = next(
            (
                p
                for p in picks
                if p[:2] == key[:2] and genes and len(genes & tops[p]) / len(genes | tops[p]) >= overlap
            ),
            None,
        )
        if twin is not None:
            alike[twin].append(key[2])
        elif len(picks) < n:
            picks.append(key)
            alike[key] = []
    return picks, alike


@keyword_options
def build_prediction_report(
    path: str | Path,
    out_dir: str | Path | None = None,
    *,
    top: int = REPORT_TOP,
    max_perturbations: int = 12,
    max_genes: int = 8,
    priors: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """Write an HTML and a Markdown report of a prediction file (or a folder of them).

    Args:
        path: From ``coreperturb predict --out`` (.parquet / .csv), or a folder of such files.
        out_dir: Where to write (default: beside the file, or into the folder).
        top: Rows per list.
        max_perturbations: Perturbations shown (those with the strongest specific responders first).
        max_genes: Genes shown in the per-gene view (those most often among the shown perturbations' top
            responders).
        priors: The model's gene priors over all readout genes (columns ``cell_line``, ``gene``, ``p_prior``;
            :func:`coreperturb.stages.readout_priors`): the "gene frequency alone would list" column. Without
            them it is computed over the genes in the file, which a ``--top`` file has already cut, and the
            report says so.

    Returns:
        The HTML and Markdown paths.
    """
    import jinja2
    from markupsafe import Markup

    path = Path(path)
    preds = read_predictions(path)
    stem = path.stem if path.is_file() else "predictions"
    out = Path(out_dir) if out_dir is not None else (path.parent if path.is_file() else path)
    out.mkdir(parents=True, exist_ok=True)
    has_dir = "effect_up" in preds.columns and preds["effect_up"].notna().any()
    known = preds[~preds["flag"].str.contains("unknown_perturbation|no_kg_information", regex=True)]
    # which perturbations to show: by their strongest specific responder other than their own target (the
    # modality's rule puts every target at the top: it would pick the targets with the lowest priors)
    off_target = known[~known["on_target"].astype(bool)] if "on_target" in known.columns else known
    strength = (
        off_target.groupby(["cell_line", "method", "perturbation"], sort=False)["excess"].max().dropna()
    )
    if priors is None:
        priors = preds.drop_duplicates(["cell_line", "gene"])[["cell_line", "gene", "p_prior"]]
        freq_note = (
            f"gene frequency's list is computed over the {preds['gene'].nunique()} genes in this file; give the "
            "model (--model-dir) to compute it over every readout gene"
        )
    else:
        freq_note = ""
    priors = priors.dropna(subset=["p_prior"]).sort_values("p_prior", ascending=False, kind="stable")
    picks, alike = diverse_picks(off_target, strength, max_perturbations, top)
    flagged = preds.loc[preds["flag"] != "", ["perturbation", "flag"]].drop_duplicates("perturbation")
    flag_items = preds.drop_duplicates(["cell_line", "perturbation"])["flag"].str.split(";").explode()
    flag_counts = flag_items[flag_items != ""].value_counts()
    flags_line = (
        "flags: "
        + ", ".join(f"{k} ({v} perturbations)" for k, v in flag_counts.items())
        + ". Flagged rows are listed as such; unknown genes have no score."
        if len(flag_counts)
        else ""
    )
    from coreperturb.stages._ranking import MIN_EXCESS, short_list

    note = NOTE.format(floor=f"{MIN_EXCESS:g}") + (f" Note: {freq_note}." if freq_note else "")
    views, md = [], [f"# coreperturb predictions — {md_text(stem)}", "", note, ""]
    if flags_line:
        md += [md_text(flags_line), ""]
    md += ["## Per perturbation: specific responders", ""]
    for line, method, pert in picks:
        d = preds[
            (preds["cell_line"] == line) & (preds["method"] == method) & (preds["perturbation"] == pert)
        ]
        tables = []
        if has_dir:
            for rank_by, title in (
                ("up", "specific, up (by excess_up, p_up ≥ 0.5)"),
                ("down", "specific, down (by excess_down, p_up < 0.5)"),
            ):
                listed = _responders(d, rank_by, top)
                tables.append(
                    (title + (f" — {short_list(len(listed), top)}" if len(listed) < top else ""), listed)
                )
        spec_table = _responders(d, "excess", top)
        if not has_dir:
            short = short_list(len(spec_table), top)
            tables.append(("specific responders (by excess)" + (f" — {short}" if short else ""), spec_table))
        freq = priors[priors["cell_line"] == line].head(top)
        freq = freq[["gene", "p_prior"]].merge(d[["gene", "p_de"]], on="gene", how="left")
        spec = set(spec_table["gene"])
        tables.append(
            (
                f"gene frequency alone would list ({len(spec & set(freq['gene']))} of {top} shared)",
                freq[["gene", "p_prior", "p_de"]],
            )
        )
        fl = ";".join(sorted(set(d["flag"].str.split(";").explode()) - {"", "unknown_gene", "on_target"}))
        fl = f"flag: {fl}" if fl else ""
        twins = alike.get((line, method, pert), [])
        also = (
            f"{len(twins)} more perturbation(s) move mostly the same genes: {', '.join(twins[:8])}"
            + (", ..." if len(twins) > 8 else "")
            if twins
            else ""
        )
        views.append(
            {
                "name": pert,
                "line": line,
                "method": method,
                "flag": fl,
                "also": also,
                "tables": [{"title": title, "html": Markup(_fmt_table(df))} for title, df in tables],
            }
        )
        md += (
            [f"### {md_text(pert)} ({md_text(line)}, {md_text(method)})", ""]
            + ([md_text(fl), ""] if fl else [])
            + ([md_text(also), ""] if also else [])
        )
        for title, df in tables:
            md += [f"**{md_text(title)}**", "", _markdown(df), ""]
    # per gene: genes most often among the shown perturbations' specific responders
    shown = preds[preds["perturbation"].isin([p for _, _, p in picks])]
    tops = shown.sort_values("excess", ascending=False).groupby("perturbation").head(top)
    gene_list = list(tops["gene"].value_counts().index[:max_genes])
    n_perts = preds["perturbation"].nunique()
    gene_note = (
        f"Among the {n_perts} perturbations in the file, ranked by excess{' (and split by direction)' if has_dir else ''}, "
        f"only those with excess ≥ {MIN_EXCESS:g}. "
        "For one gene's full list over every candidate, predict with --genes GENE --perturbations all --per gene."
    )
    gviews = []
    md += ["## Per gene: the perturbations that move it most", "", gene_note, ""]
    for g in gene_list:
        d = known[known["gene"] == g]
        parts = [(" change it", "excess")] if not has_dir else [(" raise it", "up"), (" lower it", "down")]
        for label, rank_by in parts:
            table = _ranked(d, rank_by, top, "perturbation")
            short = short_list(len(table), top, "perturbations")
            title = f"{g}: perturbations that{label}" + (f" — {short}" if short else "")
            gviews.append({"title": title, "html": Markup(_fmt_table(table))})
            md += [f"**{md_text(title)}**", "", _markdown(table), ""]
    heat = _heatmap(known, [p for _, _, p in picks], top)
    caption = (
        "Rows: the perturbations above; columns: their top specific responders (their own target left out); "
        "colour: excess (red: more likely DE than the gene's prior, blue: less; grey: the pair is not in the "
        "file, as a --top file keeps each perturbation's best genes only)."
    )
    meta = (
        f"{len(preds)} rows; {n_perts} perturbations × {preds['gene'].nunique()} genes; cell lines "
        f"{', '.join(map(str, pd.unique(preds['cell_line'])))}; methods {', '.join(map(str, pd.unique(preds['method'])))}"
        + (f"; {len(flagged)} flagged perturbations" if len(flagged) else "")
    )
    html = (
        jinja2.Environment(autoescape=True)
        .from_string(_HTML)
        .render(
            title=stem,
            meta=meta,
            note=note,
            flags=flags_line,
            perturbations=views,
            genes=gviews,
            gene_note=gene_note,
            heatmap=heat,
            heatmap_caption=caption,
        )
    )
    html_path = out / f"{stem}.report.html"
    atomic_write_text(html_path, html)
    if heat:
        atomic_write_bytes(out / f"{stem}.report_heatmap.png", base64.b64decode(heat))
        img = quote(f"{stem}.report_heatmap.png")
        md += ["## Excess heatmap", "", caption, "", f"![excess heatmap]({img})", ""]
    md_path = out / f"{stem}.report.md"
    md[1:1] = ["", md_text(meta)]
    atomic_write_text(md_path, "\n".join(md) + "\n")
    return html_path, md_path


def is_benchmark_run(path: Path) -> bool:
    """A benchmark output folder (``metrics.csv``) rather than prediction files."""
    return path.is_dir() and (path / "metrics.csv").is_file()


__all__ = ["build_prediction_report", "is_benchmark_run", "read_predictions"]
