"""Streamed prediction files of ``coreperturb predict``: Parquet, CSV or AnnData (``.h5ad``).

Rows arrive chunk by chunk (:func:`coreperturb.stages.predict_grid`) and are written as they come, so memory
stays bounded whatever the number of pairs. Each file is written under a temporary name and renamed at the
end: an interrupted run never leaves a truncated file that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from coreperturb._escape import csv_safe
from coreperturb._files import exclusive
from coreperturb._util import positions
from coreperturb.errors import CorePerturbError
from coreperturb.stages import GRID_COLUMNS, GridPlan

SUFFIXES = (".parquet", ".csv", ".h5ad")
LAYERS = tuple(c for c in GRID_COLUMNS if c.startswith(("p_", "excess", "effect")))
"""The float32 layers of an ``.h5ad`` prediction file (perturbations × genes)."""


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("cell_line", pa.string()),
            ("perturbation", pa.string()),
            ("gene", pa.string()),
            ("method", pa.string()),
            ("p_de", pa.float64()),
            ("p_up", pa.float64()),
            ("p_prior", pa.float64()),
            ("excess", pa.float64()),
            ("effect", pa.float64()),
            ("p_de_up", pa.float64()),
            ("p_de_down", pa.float64()),
            ("effect_up", pa.float64()),
            ("effect_down", pa.float64()),
            ("excess_up", pa.float64()),
            ("excess_down", pa.float64()),
            ("n_pos_evidence", pa.int32()),
            ("n_neg_evidence", pa.int32()),
            ("kg_coverage", pa.float32()),
            ("on_target", pa.bool_()),
            ("call", pa.string()),
            ("call_dir", pa.string()),
            ("flag", pa.string()),
        ]
    )


def check_output_path(path: Path) -> None:
    """Stop before any work when ``path`` cannot become the output file: it is a directory, or its folder
    cannot be created or written.

    Raises:
        CorePerturbError: Naming ``path``.
    """
    if path.is_dir():
        raise CorePerturbError(f"{path}: is a directory; give a file name ending in {', '.join(SUFFIXES)}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CorePerturbError(f"{path}: its folder {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CorePerturbError(f"{path}: cannot be written (no write permission in {parent})")


class CallTally:
    """The calls of every row written, per method, and the highest-P(DE) off-target pair not called ``DE``
    (what a user who finds no ``DE`` call should know: how near the confidence the best pair came)."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.off_target_de: dict[str, int] = {}
        """Per method: ``DE`` calls of pairs other than a perturbation's own target."""
        self.best: dict[str, tuple[float, str, str, str]] = {}
        """Per method: ``(p_de, cell line, perturbation, gene)`` of the off-target pair with the highest P(DE)
        among those not called ``DE``."""

    def add(self, frame: pd.DataFrame) -> None:
        """Count one chunk's calls (columns of :data:`GRID_COLUMNS`)."""
        for method, rows in frame.groupby("method", sort=False, observed=True):
            m = str(method)
            seen = self.counts.setdefault(m, {})
            calls = rows["call"].astype(str)
            for call, n in calls.value_counts().items():
                seen[str(call)] = seen.get(str(call), 0) + int(n)
            off = ~rows["on_target"].astype(bool).to_numpy()
            is_de = (calls == "DE").to_numpy()
            self.off_target_de[m] = self.off_target_de.get(m, 0) + int((is_de & off).sum())
            open_ = rows.loc[~is_de & off]
            p = open_["p_de"].to_numpy(dtype=np.float64)
            if np.isfinite(p).any():
                i = int(np.nanargmax(p))
                if m not in self.best or p[i] > self.best[m][0]:
                    r = open_.iloc[i]
                    self.best[m] = (float(p[i]), str(r["cell_line"]), str(r["perturbation"]), str(r["gene"]))


class PredictionWriter:
    """Writes prediction chunks to ``path`` (format by suffix); use as a context manager.

    Args:
        path: ``.parquet`` (one row per pair and method), ``.csv`` (the same rows) or ``.h5ad``
            (perturbations × genes, float32 layers :data:`LAYERS`; needs ``plan`` and one method).
        plan: The grid being written (required for ``.h5ad``).
        methods: Methods being written (``.h5ad`` takes exactly one).
        background: Encode and write in a thread of its own (at most two chunks wait), so that the next
            chunk is computed meanwhile (one chunk waits at most); an error there is raised by the next :meth:`write` or on exit.
    """

    def __init__(
        self,
        path: str | Path,
        plan: GridPlan | None = None,
        methods: list[str] | None = None,
        *,
        background: bool = False,
    ) -> None:
        self.path = Path(path)
        self.kind = self.path.suffix.lower()
        if self.kind not in SUFFIXES:
            raise CorePerturbError(f"{self.path}: a prediction file must end in {', '.join(SUFFIXES)}")
        if self.kind == ".h5ad":
            if plan is None:
                raise CorePerturbError(f"{self.path}: .h5ad output needs a perturbations × genes grid")
            if methods is not None and len(methods) != 1:
                raise CorePerturbError(
                    f"{self.path}: an .h5ad holds one method (layers p_de, p_up); choose one method "
                    "or write .parquet / .csv"
                )
        check_output_path(self.path)
        self.plan = plan
        # unique: two runs never share a temporary file (and the output's lock keeps a second run out)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
        self._lock = contextlib.ExitStack()
        self.rows = 0
        self.calls = CallTally()
        """The calls of the rows written (:class:`CallTally`; counted as each chunk is encoded, in the
        background thread where there is one: complete once the writer is closed)."""
        self._writer: Any = None
        self._h5: Any = None
        self.background = background
        self.busy_seconds = 0.0
        """Seconds spent encoding and writing chunks (in the background thread when ``background``)."""
        self._queue: queue.Queue[pd.DataFrame | None] | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._abort = False
        self._csv_started = False

    def __enter__(self) -> PredictionWriter:
        self._lock.enter_context(exclusive(self.path, "predict"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp.unlink(missing_ok=True)
            if self.kind == ".parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                schema = _schema()
                # dictionary pages for the name columns only: score columns have (nearly) no repeats, so
                # trying a dictionary for them costs half the write time and makes the file larger
                names = [f.name for f in schema if pa.types.is_string(f.type)]
                self._writer = pq.ParquetWriter(self.tmp, schema, compression="zstd", use_dictionary=names)
            elif self.kind == ".h5ad":
                self._open_h5ad()
            else:
                self.tmp.touch()
                self.tmp.unlink()
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            self._lock.close()
            raise CorePerturbError(f"{self.path}: cannot be written: {exc.strerror or exc}") from None
        if self.background:
            self._queue = queue.Queue(maxsize=1)
            self._thread = threading.Thread(target=self._drain, name="coreperturb-writer", daemon=True)
            self._thread.start()
        return self

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            if self._failure is not None or self._abort:
                continue  # keep taking chunks so that the producer never blocks on a dead writer
            try:
                self._write(frame)
            except BaseException as exc:  # raised in the producer's thread by write() / __exit__
                self._failure = exc

    def _open_h5ad(self) -> None:
        try:
            import anndata as ad
            import h5py
        except ImportError:
            raise CorePerturbError(
                "an .h5ad prediction file needs anndata: pip install 'coreperturb[anndata]'"
            ) from None
        assert self.plan is not None
        keys: list[str] = []
        lines: list[str] = []
        perts: list[str] = []
        genes: dict[str, None] = {}
        for line, ps, gs in self.plan.units:
            keys += [f"{line}|{p}" for p in ps]
            lines += [line] * len(ps)
            perts += list(ps)
            genes.update(dict.fromkeys(gs))
        self.obs_index = pd.Index(keys)
        self.var_index = pd.Index(list(genes))
        obs = pd.DataFrame(
            {
                "cell_line": pd.Categorical(lines),
                "perturbation": perts,
                "kg_coverage": np.full(len(keys), np.nan, dtype=np.float32),
                "flag": "",
            },
            index=self.obs_index,
        )
        self.obs = obs
        self.coverage = np.full(len(keys), np.nan, dtype=np.float32)
        self.flags = np.full(len(keys), "", dtype=object)
        ad.AnnData(obs=obs, var=pd.DataFrame(index=self.var_index)).write_h5ad(self.tmp)
        self._h5 = h5py.File(self.tmp, "a")
        layers = self._h5.require_group("layers")
        layers.attrs.setdefault("encoding-type", "dict")
        layers.attrs.setdefault("encoding-version", "0.1.0")
        shape = (len(self.obs_index), len(self.var_index))
        chunks = (max(1, min(shape[0], 64)), max(1, min(shape[1], 4096)))
        for name in LAYERS:
            ds = layers.create_dataset(
                name,
                shape=shape,
                dtype="f4",
                fillvalue=np.nan,
                chunks=chunks,
                compression="gzip",
                compression_opts=1,
            )
            ds.attrs["encoding-type"] = "array"
            ds.attrs["encoding-version"] = "0.2.0"

    def write(self, frame: pd.DataFrame) -> None:
        """Append one chunk (columns of :data:`GRID_COLUMNS`)."""
        frame = frame[list(GRID_COLUMNS)]
        self.rows += len(frame)
        if self._queue is None:
            self._write(frame)
            return
        if self._failure is not None:
            raise self._failure
        self._queue.put(frame)

    def _write(self, frame: pd.DataFrame) -> None:
        t0 = time.perf_counter()
        try:
            self.calls.add(frame)
            self._encode(frame)
        finally:
            self.busy_seconds += time.perf_counter() - t0

    def _encode(self, frame: pd.DataFrame) -> None:
        if self.kind == ".parquet":
            import pyarrow as pa

            self._writer.write_table(pa.Table.from_pandas(frame, schema=_schema(), preserve_index=False))
        elif self.kind == ".csv":
            csv_safe(frame).to_csv(self.tmp, mode="a", header=not self._csv_started, index=False)
            self._csv_started = True
        else:
            self._write_h5ad(frame)

    def _write_h5ad(self, frame: pd.DataFrame) -> None:
        keys = frame["cell_line"].astype(str) + "|" + frame["perturbation"].astype(str)
        rows = positions(self.obs_index, keys)
        cols = positions(self.var_index, frame["gene"].astype(str))
        lo, hi = int(rows.min()), int(rows.max()) + 1
        for name in LAYERS:
            block = np.full((hi - lo, len(self.var_index)), np.nan, dtype=np.float32)
            block[rows - lo, cols] = frame[name].to_numpy(dtype=np.float32)
            ds = self._h5["layers"][name]
            if name == "p_de" or not np.isnan(block).all():
                ds[lo:hi, :] = block
        first = frame.drop_duplicates(["cell_line", "perturbation"])
        r = positions(
            self.obs_index, first["cell_line"].astype(str) + "|" + first["perturbation"].astype(str)
        )
        self.coverage[r] = first["kg_coverage"].to_numpy(dtype=np.float32)
        self.flags[r] = first["flag"].str.replace("unknown_gene", "", regex=False).str.strip(";").to_numpy()

    def _close_h5ad(self) -> None:
        try:
            from anndata.io import write_elem  # anndata >= 0.11
        except ImportError:  # pragma: no cover - anndata 0.10
            from anndata.experimental import write_elem

        self.obs["kg_coverage"] = self.coverage
        self.obs["flag"] = self.flags
        del self._h5["obs"]
        write_elem(self._h5, "obs", self.obs)
        self._h5.close()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is not None and self._queue is not None:
            self._abort = exc_type is not None
            self._queue.put(None)
            self._thread.join()
        failure = self._failure if exc_type is None else None
        if failure is not None:
            exc_type = type(failure)
        try:
            if self._writer is not None:
                self._writer.close()
            if self._h5 is not None:
                if exc_type is None:
                    self._close_h5ad()
                else:
                    self._h5.close()
        finally:
            try:
                if exc_type is None:
                    if self.kind == ".csv" and not self.tmp.exists():
                        pd.DataFrame(columns=list(GRID_COLUMNS)).to_csv(self.tmp, index=False)
                    self.tmp.replace(self.path)
                else:
                    self.tmp.unlink(missing_ok=True)
            finally:
                self._lock.close()
        if failure is not None:
            raise failure


__all__ = ["LAYERS", "SUFFIXES", "CallTally", "PredictionWriter", "check_output_path"]
