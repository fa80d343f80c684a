"""Loaders for PerturbQA files and user tables (CSV / Parquet)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from coreperturb._defaults import TASKS
from coreperturb._deprecation import keyword_options
from coreperturb._escape import csv_safe
from coreperturb._files import atomic_write, atomic_write_text
from coreperturb.data._design import PERTURBQA_CUT_FROM, SamplingDesign, design_file_for, read_design_file
from coreperturb.data._schema import COLUMNS, QueryTable, validate_frame
from coreperturb.errors import DataValidationError

PERTURBQA_LINES: tuple[str, ...] = ("k562", "rpe1", "hepg2", "jurkat")
COLUMN_ALIASES = {"pert": "perturbation", "perturbagen": "perturbation"}


MAX_TABLE_BYTES = 8 * 1024**3
"""The largest table file read (8 GiB on disk): a bound, so that a wrong path (a device, a disk image) stops
at once instead of filling memory."""
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")


def table_format(path: Path) -> str:
    """``parquet``, ``tsv`` or ``csv``, by the suffix under any compression suffix (``x.tsv.gz`` is TSV)."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    last = suffixes[-1] if suffixes else ""
    return "parquet" if last in {".parquet", ".pq"} else "tsv" if last in {".tsv", ".tab", ".txt"} else "csv"


def read_any(path: Path, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A table file as a frame: Parquet, or CSV / TSV (compressed or not; by suffix); ``columns``: only those
    of them the file holds.

    A text cell that coreperturb wrote with a leading ``'`` to keep a spreadsheet from running it as a
    formula (:func:`coreperturb._escape.csv_safe`) is read back without it.

    Raises:
        DataValidationError: Missing, not a regular file, larger than :data:`MAX_TABLE_BYTES`, or unreadable.
    """
    if not path.exists():
        raise DataValidationError(f"{path}: file not found")
    if not path.is_file():
        raise DataValidationError(f"{path}: not a regular file (a table file is needed)")
    size = path.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise DataValidationError(
            f"{path}: {size / 1024**3:.1f} GiB; tables larger than {MAX_TABLE_BYTES // 1024**3} GiB are not read"
        )
    try:
        kind = table_format(path)
        if kind == "parquet":
            if columns is None:
                return pd.read_parquet(path)
            import pyarrow.parquet as pq

            names = set(pq.read_schema(path).names)
            return pd.read_parquet(path, columns=[c for c in columns if c in names])
        sep = "\t" if kind == "tsv" else ","
        frame = pd.read_csv(
            path,
            sep=sep,
            dtype={"label": "string"},
            keep_default_na=False,
            na_values=[""],
            usecols=None if columns is None else set(columns).__contains__,
        )
    except (OSError, ValueError, pd.errors.ParserError, EOFError) as exc:
        raise DataValidationError(f"{path}: cannot be read as a table: {exc}") from None
    for col in frame.columns:
        if frame[col].dtype == object:
            text = frame[col].astype(str)
            quoted = text.str.match(r"^'[=+\-@\t\r]")
            if quoted.any():
                frame.loc[quoted, col] = text[quoted].str[1:]
    return frame


def read_perturbqa_file(path: str | Path, cell_line: str, task: str) -> pd.DataFrame:
    """Read one PerturbQA ``{line}-{task}.csv`` (columns ``pert,gene,label,split``) into tidy columns.

    Args:
        path: The CSV file.
        cell_line: Value for the ``cell_line`` column.
        task: ``de`` or ``dir``.

    Returns:
        A validated tidy frame.
    """
    path = Path(path)
    df = read_any(path).rename(columns=COLUMN_ALIASES)
    need = ["perturbation", "gene", "label", "split"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(a PerturbQA file has columns pert,gene,label,split); found {list(map(str, df.columns))}"
        )
    df = df.assign(cell_line=cell_line, task=task)
    return validate_frame(df, str(path))


def present_cell_lines(data_dir: str | Path, tasks: Sequence[str] = ("de",)) -> list[str]:
    """Cell lines that have a ``{cell_line}-{task}.csv`` file in ``data_dir`` for every task, sorted.

    Raises:
        DataValidationError: No such file (the message lists the CSV files present).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataValidationError(f"{data_dir}: data directory not found")
    per_task = [
        {p.name[: -len(f"-{task}.csv")] for p in data_dir.glob(f"*-{task}.csv") if p.is_file()}
        for task in tasks
    ]
    lines = sorted(set.intersection(*per_task)) if per_task else []
    if not lines:
        present = sorted(p.name for p in data_dir.glob("*.csv"))
        raise DataValidationError(
            f"{data_dir}: no {{cell_line}}-{{task}}.csv file for task(s) {list(tasks)}; CSV files present: {present}"
        )
    return lines


def load_perturbqa(
    data_dir: str | Path,
    cell_lines: Sequence[str] | None = PERTURBQA_LINES,
    tasks: Sequence[str] = ("de",),
) -> QueryTable:
    """Load PerturbQA ``{line}-{task}.csv`` files from ``data_dir`` into one :class:`QueryTable`.

    ``cell_lines=None`` loads every line present (:func:`present_cell_lines`).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataValidationError(f"{data_dir}: data directory not found")
    frames = []
    for line in cell_lines if cell_lines is not None else present_cell_lines(data_dir, tasks):
        for task in tasks:
            path = data_dir / f"{line}-{task}.csv"
            if not path.exists():
                present = sorted(p.name for p in data_dir.glob("*-*.csv"))
                raise DataValidationError(
                    f"{path}: file not found (expected {{cell_line}}-{{task}}.csv; present: {present})"
                )
            frames.append(read_perturbqa_file(path, line, task))
    frame = pd.concat(frames, ignore_index=True)
    # PerturbQA's design (every listed DE gene, a sample of the others, lists cut at about 20) unless the
    # directory states its own (the synthetic benchmark's is uniform)
    design = read_design_file(data_dir) or SamplingDesign("case_control", PERTURBQA_CUT_FROM, "recorded")
    return QueryTable(frame, str(data_dir), design=design)


@keyword_options
def read_query_table(
    path: str | Path,
    *,
    cell_line: str | None = None,
    task: str | None = None,
    for_fit: bool = False,
) -> QueryTable:
    """Read a user CSV/TSV/Parquet query table.

    The file needs the columns ``perturbation`` (or ``pert``), ``gene``, ``label`` and ``split``. A file
    without a ``cell_line`` column is one cell line: ``cell_line`` if given, else the file's name without
    its suffix; a file without a ``task`` column is ``task`` (default ``de``). With ``for_fit`` the test
    split may be empty and a file without a ``split`` column is all training rows.
    """
    path = Path(path)
    df = read_any(path).rename(columns=COLUMN_ALIASES)
    if for_fit and "split" not in df.columns:
        df["split"] = "train"
    if "cell_line" not in df.columns:
        df["cell_line"] = cell_line if cell_line is not None else path.name.split(".")[0]
    if "task" not in df.columns:
        df["task"] = task if task is not None else "de"
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {list(map(str, df.columns))}"
        )
    return QueryTable(
        validate_frame(df, str(path), require_test=not for_fit),
        str(path),
        not for_fit,
        read_design_file(path.parent, design_file_for(path)),
    )


def table_tasks(path: str | Path) -> tuple[str, ...]:
    """The tasks a query table holds, from its ``task`` column alone (``de`` without one): what ``fit`` trains
    when no task is named, without reading and checking the whole table twice (it is checked when read)."""
    frame = read_any(Path(path), columns=("task",))
    if "task" not in frame.columns:
        return ("de",)
    named = set(frame["task"].dropna().astype(str).str.strip().str.lower())
    return tuple(sorted(named & set(TASKS)))  # any other value stops the whole table's read, with its row


def write_query_table(table: QueryTable, path: str | Path) -> None:
    """Write a query table as CSV or Parquet (by suffix), and its sampling design beside it
    (``NAME.design.json``) where the table knows it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = table.frame.astype({c: str for c in ("cell_line", "task", "split")})
    if path.suffix.lower() in {".parquet", ".pq"}:
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: csv_safe(frame).to_csv(tmp, index=False))
    if table.design is not None:  # read back by read_query_table: a fit knows how the pairs were chosen
        atomic_write_text(design_file_for(path), json.dumps(table.design.to_dict()) + "\n")
