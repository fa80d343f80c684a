"""The explorer's HTML pages: server-rendered, escaped, no build step, no CDN, no third-party code.

The only script is the search box's autocomplete (a few lines of our own JavaScript calling
``/api/search``); plots are matplotlib SVGs rendered on the server.
"""

from __future__ import annotations

import io
from typing import Any

import jinja2
import numpy as np
import pandas as pd

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} — coreperturb explorer</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
.plot svg { width: 100%; max-width: 1000px; height: auto; }
header { background: #1f3a5f; color: #fff; padding: .6em 1.2em; display: flex; gap: 1.5em; align-items: center; }
header a { color: #fff; text-decoration: none; font-weight: 600; } main { max-width: 1180px; margin: 1em auto; padding: 0 1em; }
form.search { position: relative; } form.search input { font-size: 1em; padding: .35em .5em; width: 22em; }
#suggest { position: absolute; top: 2.2em; left: 0; background: #fff; color: #222; border: 1px solid #bbb;
  list-style: none; margin: 0; padding: 0; width: 22em; z-index: 5; }
#suggest:empty { display: none; } #suggest li a { display: block; padding: .25em .5em; color: #222; } #suggest li a:hover { background: #eef; }
table { border-collapse: collapse; font-size: .88em; margin: .4em 0; }
th, td { border: 1px solid #ddd; padding: .2em .5em; text-align: right; } th { background: #f3f3f3; }
td.l, th.l { text-align: left; } .cols { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
.warn { background: #fff4e5; border-left: 4px solid #e08a00; padding: .5em .8em; margin: .6em 0; }
.note { color: #555; font-size: .9em; } .up { color: #b2182b; } .down { color: #2166ac; }
</style></head><body>
<header><a href="/">coreperturb explorer</a>
<form class="search" action="/go" method="get" autocomplete="off">
<input id="q" name="q" placeholder="gene or drug, e.g. TFRC" value="{{ q or '' }}" aria-label="search">
<ul id="suggest"></ul></form><span class="note" style="color:#cfd8e3">{{ info }}</span></header>
<main>{% block body %}{% endblock %}</main>
<script>
(function () {
  var box = document.getElementById("q"), list = document.getElementById("suggest"), timer = null;
  function item(href, text) {
    var li = document.createElement("li"), a = document.createElement("a");
    a.href = href; a.textContent = text; li.appendChild(a); return li;
  }
  box.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var q = box.value.trim(); list.innerHTML = "";
      if (!q) return;
      fetch("/api/search?q=" + encodeURIComponent(q)).then(function (r) { return r.json(); }).then(function (d) {
        list.innerHTML = "";
        (d.perturbations || []).slice(0, 6).forEach(function (n) {
          list.appendChild(item("/perturbation/" + encodeURIComponent(n), n + " — knock it down"));
        });
        (d.genes || []).slice(0, 6).forEach(function (n) {
          list.appendChild(item("/gene/" + encodeURIComponent(n), n + " — what moves it"));
        });
      });
    }, 150);
  });
})();
</script></body></html>
"""

BASE_TEMPLATE = _BASE
"""The page frame; its one inline script is allowed by hash in the Content-Security-Policy."""

_HOME = """{% extends "base" %}{% block body %}
<h1>What would a perturbation do?</h1>
<p>Type a gene (a CRISPRi knockdown) or a drug above. A perturbation's page lists the genes it changes
<b>specifically</b>, ranked by <i>excess</i> (p_de − prior): how much more likely a gene is DE under it than the
gene usually is (its prior, what gene frequency alone predicts). Only genes with an excess of at least {{ health.floor }} (over
the genome) and some positive evidence are listed, so a list may be short: the rest would be guesses. Each row's <i>call</i> (DE, not DE or uncertain) holds the
true answer with 90% probability; a DE call is made where P(DE) over the genome reaches 0.9. P(DE) is calibrated on
every gene of held-out training perturbations, and on PerturbQA's lines no unseen perturbation's gene reaches 0.9 (the
best-ranked are DE about 7 times in 10, and P(DE) says so): read P(DE) itself. A gene's page lists the perturbations
that raise or lower it.</p>
<p class="note">Model: {{ health.method }} on {{ health.cell_lines|join(", ") }} ({{ health.readout_genes }} readout genes,
{{ health.known_perturbations }} perturbations known to the model and its KG). P(DE) and priors are the chance over
the line's readout genes{% for l, sc in health.scale.items() %}{% if sc != "genome" %} (not for {{ l }}: the rate among its table's asked pairs){% endif %}{% endfor %};
sampling design: {{ health.design }}. JSON API: schema at <a href="/openapi.json">/openapi.json</a>.</p>
{% if examples %}<p>Try: {% for e in examples %}<a href="/perturbation/{{ e|urlencode }}">{{ e }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</p>{% endif %}
{% endblock %}"""

_PERTURBATION = """{% extends "base" %}{% block body %}
<h1>{{ r.name }} <span class="note">({{ line }}, {{ method }})</span></h1>
{% if r.renamed_from %}<p class="note">read "{{ r.renamed_from }}" as {{ r.name }}</p>{% endif %}
{% for w in warnings %}<div class="warn">{{ w }}</div>{% endfor %}
<div class="cols">
{% for t in tables %}<div><h3 class="{{ t.cls }}">{{ t.title }}</h3>{{ t.html }}</div>{% endfor %}
</div>
<h3>Excess against prior</h3>
<p class="note">Each dot is a readout gene; up: more likely DE under {{ r.name }} than the gene's prior says.
Genes at the right respond to almost anything: a high p_de there is no news about {{ r.name }}.</p>
<div class="plot">{{ plot }}</div>
<p class="note">Download: <a href="/api/perturbations/{{ r.name|urlencode }}?top={{ top }}&format=csv&cell_line={{ line|urlencode }}">CSV</a> ·
<a href="/api/perturbations/{{ r.name|urlencode }}?top={{ top }}&cell_line={{ line|urlencode }}">JSON</a></p>
{% endblock %}"""

_GENE = """{% extends "base" %}{% block body %}
<h1>What moves {{ r.name }}? <span class="note">({{ line }}, {{ method }})</span></h1>
{% if r.renamed_from %}<p class="note">read "{{ r.renamed_from }}" as {{ r.name }}</p>{% endif %}
<p class="note">Every candidate perturbation (not screened in {{ line }}) scored on {{ r.name }}; its prior (training DE
rate) is {{ prior }}.</p>
<div class="cols">{% for t in tables %}<div><h3 class="{{ t.cls }}">{{ t.title }}</h3>{{ t.html }}</div>{% endfor %}</div>
<p class="note">Download: <a href="/api/genes/{{ r.name|urlencode }}?top={{ top }}&rank_by={{ rank_by }}&format=csv&cell_line={{ line|urlencode }}">CSV</a></p>
{% endblock %}"""

_EXPLAIN = """{% extends "base" %}{% block body %}
<h1>{{ e.perturbation }} → {{ e.gene }} <span class="note">({{ e.cell_line }}, {{ e.method }})</span></h1>
<p>{{ e.summary }}</p>
{% if e.blend %}<p class="note">{{ e.blend }}</p>{% endif %}
{% if e.p_up is not none %}<p>Direction, if DE: P(up) = {{ "%.3f"|format(e.p_up) }}{% if e.call_dir %}; call: <b>{{ e.call_dir }}</b>{% endif %}
(the direction model, trained on the pairs that were DE).</p>{% endif %}
{% if e.on_target %}<div class="warn">{{ e.on_target }}</div>{% endif %}
{% if e.training_perturbation %}<div class="warn">{{ e.perturbation }} was screened in {{ e.cell_line }}: this is what the
model predicts without its own rows, not a measurement.</div>{% endif %}
{% if not e.kg_information %}<div class="warn">No KG information for {{ e.perturbation }}: the score is the gene's prior and nothing else.</div>
{% elif e.rests_on %}<div class="warn">{{ e.rests_on }}</div>{% endif %}
<div class="cols">
<div><h3 class="up">Positive evidence: related perturbations that made {{ e.gene }} DE</h3>{{ pos }}</div>
<div><h3 class="down">Negative evidence: related perturbations that left it unchanged</h3>{{ neg }}</div>
</div>
<h3>What the score rests on</h3>{{ drivers }}
{% if e.other_lines %}<h3>Cross-line evidence: {{ e.perturbation }} in the other cell lines' screens</h3>
<ul>{% for s in e.other_lines %}<li>{{ s }}</li>{% endfor %}</ul>
{% if similar %}<p class="note">{{ e.cell_line }} perturbations measured on {{ e.gene }} that responded like
{{ e.perturbation }} in the other lines:</p>{{ similar }}{% endif %}{% endif %}
<p class="note"><a href="/perturbation/{{ e.perturbation|urlencode }}">all genes of {{ e.perturbation }}</a> ·
<a href="/gene/{{ e.gene|urlencode }}">what moves {{ e.gene }}</a> ·
<a href="/api/explain?perturbation={{ e.perturbation|urlencode }}&gene={{ e.gene|urlencode }}">JSON</a></p>
{% endblock %}"""

_PENDING = """{% extends "base" %}{% block body %}
<meta http-equiv="refresh" content="5">
<h1>{{ title }}</h1><p>{{ message }}</p>
{% endblock %}"""

_ERROR = """{% extends "base" %}{% block body %}
<h1>{{ title }}</h1><div class="warn">{{ message }}</div>
{% if suggestions %}<p>Did you mean: {% for s in suggestions %}<a href="{{ prefix }}{{ s|urlencode }}">{{ s }}</a>{% if not loop.last %}, {% endif %}{% endfor %}?</p>{% endif %}
{% endblock %}"""

ENV = jinja2.Environment(
    loader=jinja2.DictLoader(
        {
            "base": _BASE,
            "home": _HOME,
            "perturbation": _PERTURBATION,
            "gene": _GENE,
            "explain": _EXPLAIN,
            "error": _ERROR,
            "pending": _PENDING,
        }
    ),
    autoescape=True,  # every name is escaped
)


def render(name: str, **ctx: Any) -> str:
    """Render one page."""
    return ENV.get_template(name).render(**ctx)


def table_html(
    df: pd.DataFrame, link: tuple[str, str] | None = None, pair: tuple[str, str] | None = None
) -> str:
    """An escaped HTML table.

    Args:
        df: Rows to show.
        link: ``(column, url prefix)``: that column's values become links.
        pair: ``("perturbation", P)`` (rows are genes of P) or ``("gene", G)`` (rows are perturbations of G):
            adds a "why?" link to each row's explanation.
    """
    from urllib.parse import quote

    from markupsafe import escape

    if df.empty:
        return "<p class='note'>none</p>"
    cols = list(df.columns)
    # text columns (names, calls, links) read left-aligned, numbers right-aligned: header as its cells
    left = {c for c in cols if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])}
    head = "".join(f"<th class='{'l' if c in left else ''}'>{escape(c)}</th>" for c in cols)
    if pair is not None:
        head += "<th></th>"
    rows = []
    for rec in df.to_dict(orient="records"):
        cells = []
        for c in cols:
            v = rec[c]
            if isinstance(v, float | np.floating):
                cells.append(f"<td>{'—' if not np.isfinite(v) else f'{v:.3f}'}</td>")
            elif isinstance(v, int | np.integer) and not isinstance(v, bool):
                cells.append(f"<td>{int(v)}</td>")
            elif link is not None and c == link[0]:
                href = escape(link[1] + quote(str(v), safe=""))
                cells.append(f"<td class='l'><a href='{href}'>{escape(v)}</a></td>")
            else:
                cells.append(f"<td class='l'>{escape(v)}</td>")
        if pair is not None:
            p, g = (pair[1], rec["gene"]) if pair[0] == "perturbation" else (rec["perturbation"], pair[1])
            href = escape(f"/explain?perturbation={quote(str(p), safe='')}&gene={quote(str(g), safe='')}")
            cells.append(f"<td><a class='why' href='{href}'>why?</a></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _labels(fig: Any, ax: Any, hi: pd.DataFrame) -> None:
    """Name the highlighted points without overlap: labels stacked at least one line apart (in screen
    space), each joined to its point by a thin leader."""
    if hi.empty:
        return
    fig.canvas.draw()  # fixes the axes limits, so data <-> pixel transforms hold
    pts = ax.transData.transform(np.column_stack([hi["p_prior"], hi["excess"]]).astype(float))
    inv = ax.transData.inverted()
    gap = 10 * fig.dpi / 72  # one 7-pt line and a little air, in pixels
    x_right = ax.transAxes.transform((0.82, 0))[0]
    placed = np.empty(len(pts))
    last = np.inf
    for i in np.argsort(-pts[:, 1], kind="stable"):  # top down: each label at most as high as the one above
        placed[i] = last = min(pts[i, 1], last - gap)
    for (x, y), ly, gene in zip(pts, placed, hi["gene"], strict=True):
        lx = x + 14 if x < x_right else x - 14  # near the right edge, the label goes to the left
        tx, ty = inv.transform((lx, ly))
        px, py = inv.transform((x, y))
        ax.annotate(
            str(gene), (px, py), xytext=(tx, ty), textcoords="data", fontsize=7,
            ha="left" if lx > x else "right", va="center",
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#777"},
        )  # fmt: skip


def effect_plot(rows: pd.DataFrame, highlight: list[str]) -> str:
    """Inline SVG: excess (p_de − prior) against the gene's prior for every readout gene, the listed genes
    labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "excess" not in rows.columns:
        rows = rows.assign(excess=rows["p_de"] - rows["p_prior"])
    d = rows.dropna(subset=["excess", "p_prior"])
    fig, ax = plt.subplots(figsize=(10, 5.2))
    ax.scatter(d["p_prior"], d["excess"], s=7, c="#999", alpha=0.5, linewidths=0)
    hi = d[d["gene"].isin(highlight)].head(20)
    ax.scatter(hi["p_prior"], hi["excess"], s=18, c="#b2182b", zorder=3)
    _labels(fig, ax, hi)
    ax.axhline(0, color="#444", lw=0.6)
    ax.set_xlabel("gene prior (p_prior: its DE rate under the training perturbations)")
    ax.set_ylabel("excess (p_de − prior)")
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.find("<svg") :]  # drop the XML prolog; matplotlib escapes the text it writes


__all__ = ["BASE_TEMPLATE", "effect_plot", "render", "table_html"]
