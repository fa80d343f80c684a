"""Data layer: the tidy query table, loaders and the synthetic generator."""

from coreperturb.data._io import PERTURBQA_LINES, load_perturbqa, read_query_table, write_query_table
from coreperturb.data._schema import COLUMNS, TASKS, QueryTable
from coreperturb.data._synthetic import SyntheticPaths, write_synthetic

__all__ = [
    "COLUMNS",
    "PERTURBQA_LINES",
    "TASKS",
    "QueryTable",
    "SyntheticPaths",
    "load_perturbqa",
    "read_query_table",
    "write_query_table",
    "write_synthetic",
]
