"""Streamed prediction files: the background writer keeps order, and its errors are not lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreperturb.report._prediction_files import PredictionWriter
from coreperturb.stages import GRID_COLUMNS


def _chunk(i: int, n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    frame = pd.DataFrame({c: rng.random(n) for c in GRID_COLUMNS})
    for c in ("cell_line", "perturbation", "gene", "method", "call", "call_dir", "flag"):
        frame[c] = [f"{c}{i}_{k}" for k in range(n)]
    frame["on_target"] = frame["on_target"] > 0.9
    frame["n_pos_evidence"] = rng.integers(0, 9, n).astype(np.int32)
    frame["n_neg_evidence"] = rng.integers(0, 9, n).astype(np.int32)
    frame["kg_coverage"] = frame["kg_coverage"].astype(np.float32)
    return frame[list(GRID_COLUMNS)]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_background_writer_equals_the_plain_one(tmp_path: Path, suffix: str) -> None:
    chunks = [_chunk(i) for i in range(7)]
    for background in (False, True):
        with PredictionWriter(tmp_path / f"{background}{suffix}", background=background) as w:
            for c in chunks:
                w.write(c)
        assert w.rows == 350 and w.busy_seconds > 0
    read = pd.read_parquet if suffix == ".parquet" else pd.read_csv
    assert read(tmp_path / f"True{suffix}").equals(read(tmp_path / f"False{suffix}"))


def test_background_writer_error_reaches_the_caller(tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    bad = _chunk(1).astype({"p_de": object})
    bad.loc[3, "p_de"] = "not a number"
    with (
        pytest.raises(Exception, match=r"not a number|float|double"),  # pyarrow's own error type
        PredictionWriter(out, background=True) as w,
    ):
        w.write(_chunk(0))
        w.write(bad)
        for i in range(2, 6):
            w.write(_chunk(i))
    assert not out.exists() and not list(tmp_path.glob(".*partial"))  # nothing that looks complete


def test_the_writer_tallies_calls_and_the_best_pair_left_uncalled(tmp_path: Path) -> None:
    chunks = []
    for i in range(3):
        c = _chunk(i, n=6)
        c["method"] = "core_voting"
        c["call"] = ["DE", "not DE", "uncertain", "not DE", "uncertain", ""]
        c["on_target"] = [True, False, False, False, False, False]
        c["p_de"] = [1.0, 0.01, 0.3 + i / 10, 0.02, 0.2, np.nan]
        chunks.append(c)
    with PredictionWriter(tmp_path / "p.parquet", background=True) as w:
        for c in chunks:
            w.write(c)
    tally = w.calls
    assert tally.counts["core_voting"] == {"DE": 3, "not DE": 6, "uncertain": 6, "": 3}
    assert tally.off_target_de["core_voting"] == 0  # the DE calls are the perturbations' own targets
    p, line, pert, gene = tally.best["core_voting"]
    assert p == pytest.approx(0.5) and (line, pert, gene) == ("cell_line2_2", "perturbation2_2", "gene2_2")
    chunks[1].loc[1, "on_target"] = False
    chunks[1].loc[1, "call"] = "DE"
    with PredictionWriter(tmp_path / "q.parquet") as w:
        for c in chunks:
            w.write(c)
    assert w.calls.off_target_de["core_voting"] == 1
