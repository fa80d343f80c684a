"""What the benchmark scripts share: where the data lives, the options every script takes, the library's
thread policy, the training folds of the inner cross-validation, and result files written atomically.

The scripts run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path`` and they import it as
``from _common import ...``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from coreperturb._files import atomic_write
from coreperturb._pipeline import BenchmarkConfig
from coreperturb._threads import adapt_threads
from coreperturb.predictors._base import perturbation_folds

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The shared data folder beside the checkout (``perturbqa/``, ``kg/``, ``lincs/``)."""

CELL_LINES = "k562,rpe1,hepg2,jurkat"


def _names(text: str) -> list[str]:
    return [s for s in text.split(",") if s]


def parser(doc: str | None, *, cell_lines: bool = True, folds: bool = False) -> argparse.ArgumentParser:
    """An argument parser with the options the scripts share: ``--shared``, and ``--cell-lines`` (parsed to a
    list) and ``--folds`` / ``--seed`` (the inner cross-validation over training perturbations) where asked."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (perturbqa/, kg/)")
    if cell_lines:
        ap.add_argument(
            "--cell-lines", type=_names, default=CELL_LINES, help="comma-separated PerturbQA cell lines"
        )
    if folds:
        ap.add_argument("--folds", type=int, default=4, help="folds of the training perturbations")
        ap.add_argument("--seed", type=int, default=123, help="seed of the fold assignment")
    return ap


def start(args: argparse.Namespace, dataset: str = "perturbqa", threads: int | None = None) -> None:
    """Follow the library's thread policy (two scripts side by side share the cores instead of
    oversubscribing them) and stop with one line when ``--shared`` lacks the dataset."""
    adapt_threads(threads)
    if not (args.shared / dataset).is_dir():
        sys.exit(f"{dataset} data not found under {args.shared}")


def perturbqa_config(
    args: argparse.Namespace, *, tasks: tuple[str, ...], **options: object
) -> BenchmarkConfig:
    """The benchmark configuration of ``coreperturb benchmark`` on the shared PerturbQA data and KG."""
    return BenchmarkConfig.from_options(
        data_dir=args.shared / "perturbqa",
        kg_dir=args.shared / "kg",
        cell_lines=tuple(args.cell_lines),
        tasks=tasks,
        **options,
    )


def training_folds(
    frame: pd.DataFrame, line: str, folds: int, seed: int
) -> Iterator[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """``(fold, inner, validation)`` over the TRAINING rows of one line, split by perturbation (the test
    split is never read)."""
    train = frame[(frame["cell_line"] == line) & (frame["split"] == "train")].reset_index(drop=True)
    fold = perturbation_folds(train["perturbation"], folds, seed)
    for f in range(folds):
        yield f, train[fold != f].reset_index(drop=True), train[fold == f].reset_index(drop=True)


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as Parquet or CSV (by the suffix) through a temporary file: a run stopped half-way
    leaves no truncated cache or table behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def cached_frame(path: Path | None, build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The frame cached at ``path`` when there is one, else ``build()`` (then cached there when given)."""
    if path is not None and path.is_file():
        print(f"read {path}", flush=True)
        return pd.read_parquet(path)
    frame = build()
    if path is not None:
        write_frame(frame, path)
    return frame


def surplus_floor(d: pd.DataFrame, bands: tuple[float, ...], *, digits: int = 4) -> float:
    """The floor rule of the lists: over rows with ``_excess`` (predicted p_de - p_prior), ``_surplus``
    (label - p_prior) and ``p_prior``, the realised surplus of every band of predicted excess per line (one-
    sided z of Σ surplus against Σ prior (1 - prior)); the floor is the lowest band edge above which every band
    is significant (z >= 1.96) on every line. Prints the bands and returns the floor (NaN: none)."""
    d = d.assign(_var=d["p_prior"] * (1 - d["p_prior"]), band=pd.cut(d["_excess"], bands, right=False))
    b = d.groupby(["cell_line", "band"], observed=True).agg(
        n=("_surplus", "size"),
        predicted=("_excess", "mean"),
        realised=("_surplus", "mean"),
        var=("_var", "sum"),
    )
    b["z"] = b["realised"] * b["n"] / np.sqrt(b["var"])
    print("\nrealised surplus (label - prior) by band of predicted excess, all validation rows:")
    print(b.drop(columns="var").round(digits).to_string())
    z = b["z"].unstack("cell_line").min(axis=1)
    lows = [iv.left for iv in z.index]
    floor = next(
        (lo for i, lo in enumerate(lows) if lo >= 0 and bool((z.iloc[i:] >= 1.96).all())), float("nan")
    )
    print(f"\nfloor (lowest band edge with every band above it significant on every line): {floor}")
    return floor
