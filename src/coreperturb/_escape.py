"""Output text escaped for its format: CSV cells that a spreadsheet would run, Markdown that would render.

Names come from users' files (and, in the explorer, from anyone who can reach it), so every output format
neutralises what its readers would interpret:

- CSV (:func:`csv_safe`): a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a
  formula to Excel, LibreOffice and Google Sheets (OWASP "CSV injection"); such text cells get a leading
  ``'``, which those programs show as text. Numbers are left alone (``-0.03`` stays a number).
- Markdown (:func:`md_text`): ``<``, ``>`` and ``&`` become entities (no raw HTML: no ``<img onerror>``, no
  ``<script>``), Markdown's own syntax characters are backslash-escaped (no links, images, emphasis or
  table breaks: ``[x](javascript:...)`` stays text), and line breaks become spaces (no injected headings).
- Terminal output goes through rich with markup escaped and emoji codes off (``:x:`` stays ``:x:``).
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`[]#|"})


def csv_cell(value: object) -> object:
    """One value as a CSV cell that no spreadsheet runs as a formula (text only; numbers unchanged)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell that starts like a formula prefixed by ``'`` (a copy where any is).

    Checks each distinct value of the text columns once, so a column of a few names over many rows costs
    little.
    """
    out = frame
    for col in frame.columns:
        s = frame[col]
        if not (pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)):
            continue
        uniq = pd.unique(s.to_numpy())
        bad = [u for u in uniq if isinstance(u, str) and u.startswith(FORMULA_STARTS)]
        if bad:
            if out is frame:
                out = frame.copy()
            out[col] = s.replace({b: "'" + b for b in bad})
    return out


def md_text(value: object) -> str:
    """``value`` as inert Markdown text: no HTML, links, images, emphasis, headings or table breaks."""
    text = " ".join(str(value).splitlines())
    return html.escape(text, quote=False).translate(_MD_SPECIAL)


def md_cell(value: object) -> str:
    """A Markdown table cell: numbers as they are, text through :func:`md_text`."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return str(value)
    return md_text(value)


__all__ = ["FORMULA_STARTS", "csv_cell", "csv_safe", "md_cell", "md_text"]
