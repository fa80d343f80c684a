"""Data layer: the tidy query table, loaders and the synthetic generator."""

from coreperturb.data.io import (
    PERTURBQA_LINES,
    load_perturbqa,
    present_cell_lines,
    read_perturbqa_file,
    read_query_table,
    write_query_table,
)
from coreperturb.data.schema import COLUMNS, TASKS, QueryTable, validate_frame
from coreperturb.data.synthetic import SyntheticPaths, write_synthetic

__all__ = [
    "COLUMNS",
    "PERTURBQA_LINES",
    "TASKS",
    "QueryTable",
    "SyntheticPaths",
    "load_perturbqa",
    "present_cell_lines",
    "read_perturbqa_file",
    "read_query_table",
    "validate_frame",
    "write_query_table",
    "write_synthetic",
]
