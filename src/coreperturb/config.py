"""Run configuration files (TOML or YAML) validated with pydantic; CLI flags override file values.

A file holds the same settings as the ``benchmark`` (or ``fit``) command's options, with underscores, e.g.::

    # run.toml
    data_dir = "../shared/data/perturbqa"
    kg_dir = "../shared/data/kg"
    cell_lines = "k562,rpe1"
    methods = "gene_frequency,core_voting,core_reasoning"
    llm = "openai"
    base_url = "http://127.0.0.1:8000/v1"
    model = "meta-llama/Llama-3.1-8B-Instruct"
    kg_edges = ["string=string_edges.tsv"]   # NAME=PATH, relative to this file

API keys never go in the file: set ``$COREPERTURB_API_KEY``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coreperturb.errors import CorePerturbError


class BenchmarkFile(BaseModel):
    """Every key a benchmark configuration file may set (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid")

    out: Path | None = None
    data_dir: Path | None = None
    kg_dir: Path | None = None
    cell_lines: str | list[str] | None = None
    task: str | list[str] | None = None
    methods: str | list[str] | None = None
    kg_sources: str | list[str] | None = None
    bootstrap: int | None = Field(default=None, ge=0)
    seed: int | None = None
    dataset: str | None = None
    negatives_per_perturbation: int | None = Field(default=None, ge=0)
    test_fraction: float | None = Field(default=None, gt=0, lt=1)
    llm: str | None = None
    model: str | None = None
    base_url: str | None = None
    concurrency: int | None = Field(default=None, ge=1)
    requests_per_second: float | None = Field(default=None, gt=0)
    timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    max_queries: int | None = Field(default=None, ge=2)
    calibration_queries: int | None = Field(default=None, ge=0)
    cache: Path | None = None
    reasoning_tokens: int | None = Field(default=None, ge=0)
    retry_failed: bool | None = None
    anndata: bool | None = None
    executor: str | None = None
    ray_address: str | None = None
    ray_workers: int | None = Field(default=None, ge=1)
    queries: Path | None = None
    kg_edges: str | list[str] | None = None
    kg_gmt: str | list[str] | None = None
    kg_structures: str | list[str] | None = None
    save_model: Path | None = None
    kg_store: str | None = None
    overwrite: bool | None = None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML or YAML configuration file.

    Returns:
        The keys the file sets (lists joined with commas, relative paths resolved against the file).

    Raises:
        CorePerturbError: naming the file and the offending key.
    """
    path = Path(path)
    if not path.exists():
        raise CorePerturbError(f"{path}: configuration file not found")
    try:
        if path.suffix.lower() == ".toml":
            raw = tomllib.loads(path.read_text())
        elif path.suffix.lower() in {".yaml", ".yml"}:
            try:
                import yaml
            except ImportError:
                raise CorePerturbError(
                    f"{path}: YAML configs need PyYAML (pip install pyyaml), or use TOML"
                ) from None
            raw = yaml.safe_load(path.read_text()) or {}
        else:
            raise CorePerturbError(f"{path}: configuration files must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise CorePerturbError(f"{path}: cannot parse: {exc}") from None
    if not isinstance(raw, dict):
        raise CorePerturbError(f"{path}: expected a table of settings at the top level")
    raw = {str(k).replace("-", "_"): v for k, v in raw.items()}
    if "api_key" in raw:
        raise CorePerturbError(f"{path}: do not store API keys in config files; set $COREPERTURB_API_KEY")
    try:
        cfg = BenchmarkFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"])
        raise CorePerturbError(f"{path}: key {key!r}: {err['msg']}") from None
    out: dict[str, Any] = {}
    for k, v in cfg.model_dump(exclude_none=True).items():
        if k in ("kg_edges", "kg_gmt", "kg_structures"):
            # NAME=PATH entries: keep a list; resolve relative paths against the file
            items = [v] if isinstance(v, str) else list(v)
            fixed = []
            for item in items:
                name, sep, p = str(item).rpartition("=")
                pth = Path(p)
                if not pth.is_absolute():
                    pth = (path.parent / pth).resolve()
                fixed.append(f"{name}={pth}" if sep else str(pth))
            out[k] = fixed
            continue
        if isinstance(v, list):
            v = ",".join(map(str, v))
        if isinstance(v, Path) and not v.is_absolute():
            v = (path.parent / v).resolve()
        out[k] = v
    return out


__all__ = ["BenchmarkFile", "load_config_file"]
