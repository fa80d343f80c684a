"""Provenance helpers shared by model files and run outputs: JSON-safe values, file digests, versions."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

PACKAGES = (
    "coreperturb",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "openai",
    "xllamacpp",
    "anndata",
    "ray",
)
"""The packages whose versions shape results (recorded in model files and run manifests)."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: dataclasses as dicts, paths as strings, NaN as ``None``; API keys dropped."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: jsonable(v) for k, v in dataclasses.asdict(obj).items() if k != "api_key"}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items() if k != "api_key"}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None  # strict JSON has no NaN / Infinity
    return obj


def config_hash(config: Any) -> str:
    """sha256 of a configuration as canonical JSON (API keys excluded)."""
    return hashlib.sha256(json.dumps(jsonable(config), sort_keys=True).encode()).hexdigest()


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


__all__ = ["PACKAGES", "config_hash", "jsonable", "package_versions", "sha256_file"]
