"""The tidy query table that flows through the whole pipeline.

One row is one question "is ``gene`` affected by ``perturbation`` in ``cell_line``?" for a ``task``
(``de``: differentially expressed or not; ``dir``: up (1) or down (0), defined on DE pairs only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from coreperturb._defaults import TASKS
from coreperturb.data._design import SamplingDesign
from coreperturb.errors import DataValidationError

COLUMNS: tuple[str, ...] = ("cell_line", "perturbation", "gene", "task", "label", "split")
SPLITS: tuple[str, ...] = ("train", "test")


def _where(source: str, row: int | None = None, column: str | None = None) -> str:
    parts = [source]
    if row is not None:
        parts.append(f"row {row}")
    if column is not None:
        parts.append(f"column {column!r}")
    return ", ".join(parts)


def validate_frame(
    df: pd.DataFrame, source: str = "<table>", *, row_offset: int = 2, require_test: bool = True
) -> pd.DataFrame:
    """Validate and normalise a query table.

    Args:
        df: Frame with the columns of :data:`COLUMNS`.
        source: Name of the file or object, used in error messages.
        row_offset: Added to the 0-based frame position to give the row number reported to the user
            (2 for a CSV with a header line: the first data row is line 2).
        require_test: Every (cell line, task) needs a test split (benchmarks); ``False`` for fitting, which
            only needs training rows.

    Returns:
        A new frame with canonical dtypes (strings for ids, int8 labels) and a fresh RangeIndex.

    Raises:
        DataValidationError: naming the file, row and column of the first problem.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(str(c)) for c in df.columns)}"
        )
    out = df.loc[:, list(COLUMNS)].reset_index(drop=True).copy()
    for col in ("cell_line", "perturbation", "gene", "task", "split"):
        values = out[col]
        bad = values.isna() | (values.astype(str).str.strip() == "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataValidationError(f"{_where(source, i + row_offset, col)}: empty value")
        out[col] = values.astype(str).str.strip()
    out["task"] = out["task"].str.lower()
    out["split"] = out["split"].str.lower()
    bad_task = ~out["task"].isin(TASKS)
    if bad_task.any():
        i = int(np.flatnonzero(bad_task.to_numpy())[0])
        raise DataValidationError(
            f"{_where(source, i + row_offset, 'task')}: task {out['task'].iat[i]!r} is not one of {TASKS}"
        )
    bad_split = ~out["split"].isin(SPLITS)
    if bad_split.any():
        i = int(np.flatnonzero(bad_split.to_numpy())[0])
        raise DataValidationError(
            f"{_where(source, i + row_offset, 'split')}: split {out['split'].iat[i]!r} is not one of {SPLITS}"
        )
    labels = pd.to_numeric(out["label"], errors="coerce")
    bad_label = ~labels.isin([0, 1])
    if bad_label.any():
        i = int(np.flatnonzero(bad_label.to_numpy())[0])
        raise DataValidationError(
            f"{_where(source, i + row_offset, 'label')}: label {df['label'].iat[i]!r} is not 0 or 1"
        )
    out["label"] = labels.astype(np.int8)
    key = ["cell_line", "task", "perturbation", "gene"]
    dup = out.duplicated(key)
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        r = out.iloc[i]
        raise DataValidationError(
            f"{_where(source, i + row_offset)}: duplicate pair perturbation={r.perturbation!r} "
            f"gene={r.gene!r} (cell_line={r.cell_line!r}, task={r.task!r})"
        )
    folded = out[key].assign(perturbation=out["perturbation"].str.upper(), gene=out["gene"].str.upper())
    dup = folded.duplicated(keep=False)
    if dup.any():  # the same pair written in two cases: two rows for one pair, whatever their labels
        rows = np.flatnonzero(dup.to_numpy())
        first = folded.iloc[rows[0]]
        same = rows[(folded.iloc[rows] == first).all(axis=1).to_numpy()]
        a, b = out.iloc[same[0]], out.iloc[same[1]]
        raise DataValidationError(
            f"{_where(source, int(same[1]) + row_offset)}: pair perturbation={b.perturbation!r} gene={b.gene!r} "
            f"repeats row {int(same[0]) + row_offset} (perturbation={a.perturbation!r} gene={a.gene!r}) in "
            "another letter case; write each name one way"
        )
    for (line, task), grp in out.groupby(["cell_line", "task"], sort=True):
        counts = grp["split"].value_counts()
        for split in SPLITS if require_test else ("train",):
            if counts.get(split, 0) == 0:
                raise DataValidationError(
                    f"{source}: cell_line={line!r} task={task!r} has an empty {split!r} split"
                )
        train_perts = set(grp.loc[grp["split"] == "train", "perturbation"])
        leak = grp["split"].eq("test") & grp["perturbation"].isin(train_perts)
        if leak.any():
            i = int(grp.index[np.flatnonzero(leak.to_numpy())[0]])
            raise DataValidationError(
                f"{_where(source, i + row_offset, 'perturbation')}: test perturbation "
                f"{out['perturbation'].iat[i]!r} also occurs in the train split of cell_line={line!r} "
                f"task={task!r}; the benchmark needs unseen test perturbations"
            )
    for col in ("cell_line", "task", "split"):
        out[col] = out[col].astype("category")
    return out


@dataclass(frozen=True)
class TablePart:
    """The lines one source table brought into a combined :class:`QueryTable`, with its design.

    Attributes:
        source: The table's file or directory, for messages.
        cell_lines: Its cell lines.
        design: Its design where its loader knows it (``None``: estimated at fit time from its rows alone).
    """

    source: str
    cell_lines: tuple[str, ...]
    design: SamplingDesign | None = None


@dataclass(frozen=True)
class QueryTable:
    """A validated tidy table of (cell_line, perturbation, gene, task, label, split) rows.

    Attributes:
        frame: The validated frame. Treat it as read-only.
        source: Where the rows came from (file name or ``"synthetic"``), for messages.
        require_test: Whether every (cell line, task) must have test rows (see :func:`validate_frame`).
        design: How the table's pairs were chosen, where the loader knows it (``None``: estimated at fit
            time; see :mod:`coreperturb.data._design`).
        parts: Where the table joins tables of several sources (:func:`combine_tables`): each source's lines
            and design, each design resolved on its own rows; ``()``: one source (``design``).
    """

    frame: pd.DataFrame
    source: str = "<table>"
    require_test: bool = True
    design: SamplingDesign | None = None
    parts: tuple[TablePart, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "frame", validate_frame(self.frame, self.source, require_test=self.require_test)
        )

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def cell_lines(self) -> list[str]:
        """Cell lines present, sorted."""
        return sorted(self.frame["cell_line"].astype(str).unique())

    @property
    def tasks(self) -> list[str]:
        """Tasks present, sorted."""
        return sorted(self.frame["task"].astype(str).unique())

    def subset(self, cell_line: str | None = None, task: str | None = None) -> QueryTable:
        """Rows of one cell line and/or task."""
        m = np.ones(len(self.frame), dtype=bool)
        if cell_line is not None:
            m &= (self.frame["cell_line"] == cell_line).to_numpy()
        if task is not None:
            m &= (self.frame["task"] == task).to_numpy()
        return self.keep(m)

    def keep(self, rows: np.ndarray) -> QueryTable:
        """The rows where ``rows`` is true, with the table's source, design and the parts still present."""
        frame = self.frame.loc[rows]
        lines = set(frame["cell_line"].astype(str))
        parts = tuple(
            TablePart(p.source, kept, p.design)
            for p in self.parts
            if (kept := tuple(x for x in p.cell_lines if x in lines))
        )
        return QueryTable(frame, self.source, self.require_test, self.design, parts)

    def split(self, name: str) -> pd.DataFrame:
        """Rows of the ``train`` or ``test`` split (a copy)."""
        return self.frame.loc[self.frame["split"] == name].reset_index(drop=True)

    def groups(self) -> Iterator[tuple[str, str, QueryTable]]:
        """Yield ``(cell_line, task, subtable)`` for every benchmark unit."""
        for line in self.cell_lines:
            for task in self.tasks:
                sub = self.subset(line, task)
                if len(sub):
                    yield line, task, sub


def combine_tables(tables: Sequence[QueryTable]) -> QueryTable:
    """One table of the rows of several (a user's screen beside a data directory's screens): each keeps its
    own sampling design (:attr:`QueryTable.parts`); test rows are required where every table requires them.

    Raises:
        DataValidationError: A cell line is in two of the tables.
    """
    if len(tables) == 1:
        return tables[0]
    seen: dict[str, str] = {}
    parts: list[TablePart] = []
    for t in tables:
        for line in t.cell_lines:
            if line in seen:
                raise DataValidationError(
                    f"cell line {line!r} is in both {seen[line]} and {t.source}; name your table's line "
                    "differently (a cell_line column, or --cell-line for a table without one)"
                )
            seen[line] = t.source
        parts += list(t.parts) or [TablePart(t.source, tuple(t.cell_lines), t.design)]
    frame = pd.concat([t.frame for t in tables], ignore_index=True)
    for col in ("cell_line", "task", "split"):
        frame[col] = frame[col].astype(str)
    source = " + ".join(t.source for t in tables)
    return QueryTable(frame, source, all(t.require_test for t in tables), tables[0].design, tuple(parts))
