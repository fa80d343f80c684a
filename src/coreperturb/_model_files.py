"""Fitted models on disk: a versioned, inspectable directory that never unpickles arbitrary objects.

A model directory holds:

* ``model.json`` — format and package versions, the fit configuration and seed, the KG's content hash and
  how it was built, one entry per fitted (cell line, task, method) with its parameters and fitted
  settings, the data warnings of the fit (too little data), the sha256 of every other file, and
  ``content_sha256``: the sha256 of its own canonical content (sorted keys, compact separators, without
  that key), so that a hand edit of a threshold or parameter stops the load. A deliberate edit is recorded
  with :func:`reseal_model` (``coreperturb reseal-model DIR``), which writes the new digest and an entry in
  ``resealed``;
* ``train.parquet`` — the training rows (the evidence pools, and the context of transfer methods);
* ``calibration.parquet`` — the conformal calibration rows of the calls (gene, label, score and prior of
  held-out training perturbations, per cell line, task and method); absent in models of earlier releases,
  whose predictions then carry no calls;
* ``estimators.npz`` — the fitted combiners and calibrators as plain arrays (gradient-boosted trees,
  logistic regressions; :mod:`coreperturb.predictors._portable`), read with ``allow_pickle=False`` and
  scored without scikit-learn, bit for bit as ``predict_proba``;
* ``estimators.skops`` — only for estimators those arrays cannot hold (a custom combiner), written with
  ``skops.io`` and loaded with an explicit list of trusted types (every estimator of a format 1 or 2 model);
* ``kg.npz`` / ``kg.json`` — the knowledge graph (CSR arrays, ``allow_pickle=False``; names in JSON); with
  ``kg_store="reference"``, rebuilt from the files named in ``model.json`` to the same content hash.

Every failure to load names the file and says what is wrong in one line (:class:`ModelFileError`).

This module runs over 500 lines because the format's schema (:class:`ModelJson`) and its checks live beside
the writer and the reader, so that what is written and what is accepted cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from coreperturb._deprecation import keyword_options
from coreperturb._model_compat import fit_config_of
from coreperturb._provenance import jsonable, package_versions, sha256_file
from coreperturb._version import __version__
from coreperturb.data._design import SamplingDesign
from coreperturb.errors import CorePerturbError
from coreperturb.graph._kg import KnowledgeGraph
from coreperturb.graph._sources import build_kg_from_recipe
from coreperturb.graph._store import KG_ARRAYS, KG_META, kg_hash, load_kg, save_kg
from coreperturb.predictors._base import PREDICTORS, FittedState
from coreperturb.predictors._portable import from_portable, to_portable
from coreperturb.stages import FittedModels
from coreperturb.stages._blend import blend_record
from coreperturb.stages._fitted import CALIBRATION_COLUMNS, CALIBRATION_EXTRA, TRAIN_COLUMNS, genome_maps_of

log = logging.getLogger(__name__)

FORMAT = "coreperturb-model"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
"""Format 3 keeps the estimators as arrays (``estimators.npz``); format 2 added ``content_sha256``; models
of formats 1 and 2 still load (format 1 with a warning)."""
DIGEST_KEY = "content_sha256"
MODEL_JSON = "model.json"
TRAIN_FILE = "train.parquet"
CALIBRATION_FILE = "calibration.parquet"
ESTIMATORS_FILE = "estimators.skops"
ARRAYS_FILE = "estimators.npz"
SKOPS_KIND = "skops"
"""The ``estimator_kinds`` entry of an estimator kept in ``estimators.skops``."""
KG_STORES = ("embed", "reference")
TRUSTED_TYPES: tuple[str, ...] = (
    # the trees of HistGradientBoostingClassifier (CORE-Voting's default combiner); everything else the
    # built-in predictors save (logistic regressions, scalers, pipelines) is trusted by skops by default
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)


class ModelFileError(CorePerturbError):
    """A model directory is missing, truncated, modified, of another version or paired with another KG."""


def _skops() -> Any:
    try:
        import skops.io as sio
    except ImportError:  # pragma: no cover - skops is a dependency
        raise CorePerturbError("model files need skops: pip install skops") from None
    return sio


@keyword_options
def save_model(
    models: FittedModels,
    directory: str | Path,
    *,
    kg_store: str = "embed",
    overwrite: bool = False,
) -> Path:
    """Write fitted models to a model directory (atomically: a failed save leaves no partial directory).

    Args:
        models: From :func:`coreperturb.stages.fit`.
        directory: Target directory.
        kg_store: ``embed`` (default) stores the KG in the directory; ``reference`` stores only its content
            hash and how to rebuild it (KG directory, sources, user files), for smaller model files.
        overwrite: Replace an existing model directory.

    Returns:
        The directory.

    Raises:
        ModelFileError: The target exists and is not a model directory (or ``overwrite`` is off), or a
            model cannot be saved.
    """
    if kg_store not in KG_STORES:
        raise ModelFileError(f"unknown kg_store {kg_store!r}; use {' or '.join(KG_STORES)}")
    if kg_store == "reference" and not models.kg_recipe:
        raise ModelFileError("kg_store='reference' needs to know how the KG was built; use kg_store='embed'")
    out = Path(directory)
    check_model_target(out, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        units: list[dict[str, Any]] = []
        estimators: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for i, ((line, task, method), model) in enumerate(models.models.items()):
            try:
                state = model.fitted_state()
            except (NotImplementedError, ValueError) as exc:
                raise ModelFileError(f"cannot save {line}/{task}/{method}: {exc}") from None
            key = f"{line}/{task}/{method}"
            kinds: dict[str, str] = {}
            for name, est in state.estimators.items():
                portable = to_portable(est)
                if portable is None:
                    estimators[f"{key}/{name}"] = est
                    kinds[name] = SKOPS_KIND
                    continue
                kinds[name] = portable[0]
                # array names from the unit's position and the estimator's attribute, never from user names
                arrays.update({f"u{i}.{name}.{k}": v for k, v in portable[1].arrays().items()})
            units.append(
                {
                    "cell_line": line,
                    "task": task,
                    "method": method,
                    "class": type(model).__name__,
                    "params": jsonable(state.params),
                    "attrs": jsonable(state.attrs),
                    "estimators": sorted(state.estimators),
                    "estimator_kinds": kinds,
                    "uses_context": bool(getattr(model, "context_", None) is not None),
                    "context_lines": list(models.evidence_lines(line, task, method)),
                    "blend": blend_record(models, line, task, method),
                    "n_train_rows": len(models.training_rows(line, task)),
                }
            )
        train = models.train.loc[:, list(TRAIN_COLUMNS)]
        train.to_parquet(tmp / TRAIN_FILE, index=False)
        _write_npz(tmp / ARRAYS_FILE, arrays)
        written = [tmp / TRAIN_FILE, tmp / ARRAYS_FILE]
        if estimators:  # only estimators the arrays cannot hold (custom combiners) need skops
            _skops().dump(estimators, tmp / ESTIMATORS_FILE)
            written.append(tmp / ESTIMATORS_FILE)
        if models.calibration is not None:
            cols = [*CALIBRATION_COLUMNS, *(c for c in CALIBRATION_EXTRA if c in models.calibration.columns)]
            models.calibration.loc[:, cols].to_parquet(tmp / CALIBRATION_FILE, index=False)
            written.append(tmp / CALIBRATION_FILE)
        if kg_store == "embed":
            written += save_kg(models.kg, tmp)
        files = {p.name: sha256_file(p) for p in written}
        kg_info: dict[str, Any] = {
            "hash": kg_hash(models.kg),
            "store": kg_store,
            "recipe": models.kg_recipe,
            "n_genes": len(models.kg.genes),
            "relations": list(models.kg.relation_names),
        }
        if kg_store == "embed":
            # the KG files the content hash was computed with: while they are unchanged, loading need not
            # recompute it (see _load_kg)
            kg_info["hashed_files"] = {name: files[name] for name in (KG_ARRAYS, KG_META)}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "coreperturb_version": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "packages": package_versions(),
            "fit_config": jsonable(models.config),
            "seed": models.config.seed,
            "kg": kg_info,
            "units": units,
            "data_warnings": list(models.warnings),
            "screens": models.screens(),
            **({"sampling_design": models.design_record()} if models.design is not None else {}),
            "files": files,
        }
        meta[DIGEST_KEY] = content_digest(meta)
        (tmp / MODEL_JSON).write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
        umask = os.umask(0)
        os.umask(umask)
        out.chmod(0o777 & ~umask)  # mkdtemp made it private
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``numpy.savez`` with fixed member times and order: the same arrays give the same bytes (and sha256)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(arrays[name]), allow_pickle=False)


def check_model_target(directory: str | Path, *, overwrite: bool = False) -> None:
    """Stop before any work when ``directory`` cannot become a model directory: it exists and is no model
    directory, it is a model directory and ``overwrite`` is off, or its folder cannot be written.

    Raises:
        ModelFileError: Naming the directory and what to do.
    """
    out = Path(directory)
    if out.exists():
        if not (out / MODEL_JSON).exists() and (not out.is_dir() or any(out.iterdir())):
            raise ModelFileError(
                f"{out}: exists and is not a coreperturb model directory; choose another directory"
            )
        if not overwrite:
            raise ModelFileError(
                f"{out}: a model directory exists already; replace it on purpose (--overwrite, or "
                "overwrite=True in Python)"
            )
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ModelFileError(f"{out}: cannot be written (no write permission in {parent})")


def content_digest(meta: dict[str, Any]) -> str:
    """sha256 of ``model.json``'s canonical content (sorted keys, compact separators) without its digest."""
    body = {k: v for k, v in meta.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def reseal_model(directory: str | Path, note: str = "") -> str:
    """Accept a deliberate edit of ``model.json``: store its new digest and record the edit in ``resealed``.

    The other files must still match their recorded sha256; nothing else is checked, so a resealed model is
    exactly as trustworthy as the edit.

    Returns:
        The new digest.
    """
    d = Path(directory)
    meta = read_model_json(d, verify=False)
    for name, digest in meta["files"].items():
        if not (d / name).is_file() or sha256_file(d / name) != digest:
            raise ModelFileError(
                f"{d / name}: missing or modified; reseal only records edits of {MODEL_JSON}"
            )
    entry = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "note": note}
    meta["resealed"] = [*meta.get("resealed", []), entry]
    meta["format_version"] = FORMAT_VERSION
    meta[DIGEST_KEY] = content_digest(meta)
    (d / MODEL_JSON).write_text(json.dumps(meta, indent=1))
    return str(meta[DIGEST_KEY])


MAX_MODEL_JSON_BYTES = 64 * 1024**2
"""A bound on ``model.json`` (real ones are kilobytes)."""


class _Unit(BaseModel):
    """One fitted (cell line, task, method) of ``model.json``."""

    model_config = ConfigDict(extra="allow", strict=True)
    cell_line: str
    task: str
    method: str
    params: dict[str, Any]
    attrs: dict[str, Any]
    estimators: list[str]
    estimator_kinds: dict[str, str] | None = None
    uses_context: bool = False
    n_train_rows: int | None = None


class _KG(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    hash: str
    store: str
    recipe: dict[str, Any] | None = None


class _LineDesignJson(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    kind: Literal["complete", "case_control", "uniform"]
    lists_cut_from: int | None = None
    source: str = "recorded"


class _DesignJson(_LineDesignJson):
    by_line: dict[str, _LineDesignJson] | None = None
    genome_maps: dict[str, dict[str, dict[str, float]]] | None = None


class _FitConfigJson(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    methods: list[str] | tuple[str, ...]
    seed: int = 0
    dataset: str = "perturbqa"


class ModelJson(BaseModel):
    """The schema ``model.json`` is checked against before anything in it is used (types are strict: a
    ``"2"`` is no format version, ``true`` no integer)."""

    model_config = ConfigDict(extra="allow", strict=True)
    format: str
    format_version: int
    files: dict[str, str]
    units: list[_Unit]
    kg: _KG
    fit_config: _FitConfigJson
    data_warnings: list[str] = []
    sampling_design: _DesignJson | None = None


def read_model_json(directory: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """The validated ``model.json`` of a model directory (format and version checked).

    Raises:
        ModelFileError: Missing, unreadable, not a coreperturb model, or of a newer format.
    """
    d = Path(directory)
    path = d / MODEL_JSON
    if not d.is_dir():
        raise ModelFileError(f"{d}: model directory not found")
    if not path.is_file():
        raise ModelFileError(
            f"{d}: not a coreperturb model directory (no {MODEL_JSON}); create one with `coreperturb fit`"
        )
    if path.stat().st_size > MAX_MODEL_JSON_BYTES:
        raise ModelFileError(f"{path}: {path.stat().st_size} bytes; a model.json is far smaller (modified?)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: bad JSON, or an integer of more digits than Python converts; RecursionError: nesting
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ModelFileError(f"{path}: not valid JSON (truncated or modified?): {why}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: not a coreperturb model file (format {meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    version = meta.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:  # not "2", not true
        raise ModelFileError(
            f"{path}: model format {version} (written by coreperturb {meta.get('coreperturb_version')}); this "
            f"coreperturb {__version__} reads format {FORMAT_VERSION}: "
            + (
                "upgrade coreperturb"
                if isinstance(version, int) and version > FORMAT_VERSION
                else "refit the model"
            )
        )
    for key in ("files", "units", "kg", "fit_config"):
        if key not in meta:
            raise ModelFileError(f"{path}: missing key {key!r} (truncated or modified?)")
    try:
        ModelJson.model_validate(meta)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ModelFileError(f"{path}: {where}: {err['msg']} (modified?)") from None
    if verify:
        if version == 1:
            warnings.warn(
                f"{path}: format 1 (coreperturb before 0.2) has no digest of its own content, so hand edits "
                "cannot be detected; refit, or record it as it is with `coreperturb reseal-model`",
                stacklevel=3,
            )
        elif meta.get(DIGEST_KEY) != content_digest(meta):
            raise ModelFileError(
                f"{path}: content does not match its {DIGEST_KEY} (edited by hand?); refit, or accept a "
                "deliberate edit with `coreperturb reseal-model`"
            )
    return meta


def load_model(directory: str | Path, trusted: Sequence[str] = ()) -> FittedModels:
    """Load a model directory written by :func:`save_model`.

    Args:
        directory: The model directory.
        trusted: Extra scikit-learn types to trust in ``estimators.skops`` (only for models you made
            yourself with a custom combiner; see ``skops.io.get_untrusted_types``).

    Raises:
        ModelFileError: One line naming the file: missing or truncated files, a sha256 that does not
            match ``model.json``, a model format this version cannot read, untrusted types, or a KG whose
            content differs from the one the model was fitted on.
    """
    d = Path(directory)
    meta = read_model_json(d)
    for name, digest in meta["files"].items():
        path = d / name
        if not path.is_file():
            raise ModelFileError(f"{path}: file missing from the model directory")
        if sha256_file(path) != digest:
            raise ModelFileError(f"{path}: sha256 does not match {MODEL_JSON} (truncated or modified)")
    needed = (TRAIN_FILE, ARRAYS_FILE) if meta["format_version"] >= 3 else (TRAIN_FILE, ESTIMATORS_FILE)
    for name in needed:
        if name not in meta["files"]:
            raise ModelFileError(f"{d / MODEL_JSON}: lists no {name} (truncated or modified?)")
    train = _read_rows(d / TRAIN_FILE, TRAIN_COLUMNS, ("cell_line", "task", "perturbation", "gene"))
    kg = _load_kg(d, meta)
    estimators = _load_estimators(d, meta, trusted)
    calibration = None
    if CALIBRATION_FILE in meta["files"]:
        calibration = _read_rows(
            d / CALIBRATION_FILE, CALIBRATION_COLUMNS, ("cell_line", "task", "method", "gene")
        )
    fitted = FittedModels(
        kg,
        {},
        train,
        fit_config_of(meta["fit_config"]),
        meta["kg"].get("recipe"),
        {},
        warnings=tuple(meta.get("data_warnings", ())),
        calibration=calibration,
        design=SamplingDesign.from_dict(meta["sampling_design"]) if "sampling_design" in meta else None,
        line_designs={
            str(line): SamplingDesign.from_dict(raw)
            for line, raw in (meta.get("sampling_design", {}).get("by_line") or {}).items()
        },
        genome_maps=genome_maps_of(meta.get("sampling_design") or {}),
    )
    for u in meta["units"]:
        line, task, method = u["cell_line"], u["task"], u["method"]
        key = f"{line}/{task}/{method}"
        cls = PREDICTORS.get(method)
        state = FittedState(
            params=u["params"],
            attrs=u["attrs"],
            estimators={n: estimators[f"{key}/{n}"] for n in u["estimators"] if f"{key}/{n}" in estimators},
        )
        if len(state.estimators) != len(u["estimators"]):
            where = d / (ARRAYS_FILE if meta["format_version"] >= 3 else ESTIMATORS_FILE)
            raise ModelFileError(f"{where}: estimators of {key} missing")
        # the unit's rows as the model will find them again (their positions are kept for predictions)
        rows = fitted.training_rows(line, task)
        if len(rows) != u.get("n_train_rows", len(rows)):
            raise ModelFileError(
                f"{d / TRAIN_FILE}: {key} has {len(rows)} training rows, model.json says {u['n_train_rows']}"
            )
        context = fitted.context_rows(line, task) if u.get("uses_context") else None
        try:
            fitted.models[(line, task, method)] = cls.from_fitted_state(kg, state, rows, context)  # type: ignore[attr-defined]
        except (KeyError, ValueError, TypeError, NotImplementedError) as exc:
            raise ModelFileError(f"{d / MODEL_JSON}: {key} cannot be rebuilt: {exc}") from None
    return fitted


def _load_estimators(d: Path, meta: dict[str, Any], trusted: Sequence[str]) -> dict[str, Any]:
    """Every unit's fitted estimators, keyed ``line/task/method/name``: arrays from ``estimators.npz``
    (format 3) and anything else from ``estimators.skops`` (skops and scikit-learn load only then)."""
    out: dict[str, Any] = {}
    if meta["format_version"] >= 3:
        path = d / ARRAYS_FILE
        try:
            with np.load(path, allow_pickle=False) as npz:
                stored = {k: npz[k] for k in npz.files}
        except Exception as exc:  # OSError, ValueError, EOFError, zipfile.BadZipFile on a damaged file
            raise ModelFileError(f"{path}: cannot be read: {exc}") from None
        for i, u in enumerate(meta["units"]):
            key = f"{u['cell_line']}/{u['task']}/{u['method']}"
            for name, kind in (u.get("estimator_kinds") or {}).items():
                if kind == SKOPS_KIND:
                    continue
                prefix = f"u{i}.{name}."
                parts = {k[len(prefix) :]: v for k, v in stored.items() if k.startswith(prefix)}
                try:
                    out[f"{key}/{name}"] = from_portable(kind, parts)
                except (KeyError, ValueError, IndexError) as exc:
                    raise ModelFileError(f"{path}: {key}/{name} cannot be rebuilt: {exc}") from None
        if ESTIMATORS_FILE not in meta["files"]:
            return out
    saved_sklearn = meta.get("packages", {}).get("scikit-learn")
    now_sklearn = package_versions(["scikit-learn"]).get("scikit-learn")
    if saved_sklearn and now_sklearn and saved_sklearn != now_sklearn:
        warnings.warn(
            f"{d}: saved with scikit-learn {saved_sklearn}, loaded with {now_sklearn}; predictions may differ",
            stacklevel=3,
        )
    return out | _load_skops(d / ESTIMATORS_FILE, trusted)


def _load_skops(est_path: Path, trusted: Sequence[str]) -> dict[str, Any]:
    sio = _skops()
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        # one pass: skops refuses any type outside the trusted list (no separate audit pass: 0.3 s less)
        loaded = sio.load(est_path, trusted=[*TRUSTED_TYPES, *trusted])
    except UntrustedTypesFoundException as exc:
        found = re.search(r"found in the file: (\[.*?\])", str(exc))
        bad = found.group(1) if found else str(exc)
        raise ModelFileError(
            f"{est_path}: holds types that are not trusted: {bad}; if you saved this model yourself "
            "(e.g. with a custom combiner), pass them to load_model(..., trusted=[...])"
        ) from None
    except Exception as exc:  # skops raises many kinds on a damaged file
        raise ModelFileError(f"{est_path}: cannot be loaded: {exc}") from None
    return dict(loaded)


def _read_rows(path: Path, columns: Sequence[str], names: Sequence[str]) -> pd.DataFrame:
    """A Parquet table of the model directory with its required columns, name columns as strings."""
    try:
        rows = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot be read: {exc}") from None
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise ModelFileError(f"{path}: missing column(s) {missing}")
    # only the columns that are not all strings already: astype() would split the frame into one block per
    # column, which pandas then merges again on first use (about 30 ms for a K562 model)
    convert = [c for c in names if pd.api.types.infer_dtype(rows[c], skipna=False) != "string"]
    return rows.astype(dict.fromkeys(convert, str)) if convert else rows


def _load_kg(d: Path, meta: dict[str, Any]) -> KnowledgeGraph:
    info = meta["kg"]
    if info.get("store", "embed") == "embed":
        for name in (KG_ARRAYS, KG_META):
            if name not in meta["files"]:
                raise ModelFileError(f"{d / MODEL_JSON}: lists no {name} (truncated or modified?)")
        try:
            kg = load_kg(d)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{d / KG_META}: the stored KG cannot be read: {exc}") from None
        where = f"{d / KG_ARRAYS}"
        hashed = info.get("hashed_files")
        if isinstance(hashed, dict) and hashed == {n: meta["files"][n] for n in (KG_ARRAYS, KG_META)}:
            # load_model has checked these files against the sha256 in model.json, and they are the very
            # bytes the content hash was computed with at save time: recomputing it would find it again
            return kg
    else:
        recipe = info.get("recipe") or {}
        try:
            kg = build_kg_from_recipe(recipe)
        except CorePerturbError as exc:
            raise ModelFileError(f"{d / MODEL_JSON}: the model's KG cannot be rebuilt: {exc}") from None
        where = f"the KG rebuilt from {recipe.get('kg_dir') or 'the files in ' + MODEL_JSON}"
    got = kg_hash(kg)
    if got != info.get("hash"):
        raise ModelFileError(
            f"{where}: differs from the KG the model was fitted on (content sha256 {got[:12]}… vs "
            f"{str(info.get('hash'))[:12]}… in {d / MODEL_JSON}); restore those KG files or refit"
        )
    return kg


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "TRUSTED_TYPES",
    "ModelFileError",
    "check_model_target",
    "content_digest",
    "load_model",
    "read_model_json",
    "reseal_model",
    "save_model",
]
