"""Run outputs: metrics.csv, predictions.parquet, llm_details.parquet, examples.json, manifest.json, AnnData."""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coreperturb._escape import csv_safe
from coreperturb._files import atomic_write
from coreperturb._provenance import config_hash, jsonable, package_versions, sha256_file
from coreperturb._util import positions
from coreperturb.data._signatures import LINCS_FILES
from coreperturb.errors import MissingDependencyError
from coreperturb.predictors._base import LLM_METHODS


def input_files(config: Any, workdir: Path) -> list[Path]:
    """The data and KG files a benchmark configuration reads."""
    files: list[Path] = []
    data, kg, dataset = config.data, config.kg, config.fit.dataset
    data_dir = data.data_dir
    kg_dir = kg.kg_dir
    extra = [Path(p) for _, p in (*kg.kg_edges, *kg.kg_gmt)] + [Path(p) for p in kg.kg_structures]
    if data.queries is not None:
        if data_dir is None:  # the table alone; with a data directory too, its files as well (below)
            files = [*map(Path, data.queries), *extra]
            if kg_dir is not None:
                files += sorted(p for p in Path(kg_dir).iterdir() if p.is_file())
            return [f for f in files if f.exists()]
        files = list(map(Path, data.queries))
    if data_dir is None:
        syn = workdir / "synthetic_input"
        data_dir = syn / ("lincs" if dataset == "lincs" else "data")
        kg_dir = kg_dir or syn / "kg"
    data_dir = Path(data_dir)
    if dataset == "lincs":
        files += [data_dir / f for f in LINCS_FILES.values()]
    else:
        lines = data.cell_lines
        if lines and data.queries is not None:  # beside a table: the lines the directory holds
            lines = tuple(x for x in lines if (data_dir / f"{x}-{data.tasks[0]}.csv").is_file())
        for task in data.tasks:
            if lines:
                files += [data_dir / f"{line}-{task}.csv" for line in lines]
            else:
                files += sorted(data_dir.glob(f"*-{task}.csv"))
    if kg_dir is not None and Path(kg_dir).is_dir():
        files += sorted(p for p in Path(kg_dir).iterdir() if p.is_file())
    return [f for f in [*files, *extra] if f.exists()]


def build_manifest(result: Any, config: Any, workdir: Path) -> dict[str, Any]:
    """Everything needed to reproduce or audit a run."""
    from coreperturb.llm._prompts import template_for  # the LLM layer loads only for a benchmark's manifest

    llm_methods = [m for m in config.fit.methods if m in LLM_METHODS]
    templates = {
        f"{fam}_{task}": template_for(fam, task).hash
        for fam in {"isolated" if m == "llm_isolated" else "core" for m in llm_methods}
        for task in config.data.tasks
    }
    models = {}
    for (line, task, method), model in result.models.items():
        params = model.saved_params() if hasattr(model, "saved_params") else {}
        models[f"{line}/{task}/{method}"] = jsonable(params)
    backend = None
    for model in result.models.values():
        b = getattr(model, "backend_", None)
        if b is not None:
            backend = b.describe()
            break
    return {
        "coreperturb_manifest": 1,
        "command": sys.argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "config": jsonable(config),
        "config_hash": config_hash(config),
        "seeds": {"seed": config.fit.seed},
        "inputs": {str(p): sha256_file(p) for p in input_files(config, workdir)},
        "llm": {"backend": backend, "prompt_templates": templates} if llm_methods else None,
        "models": models,
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "llm_stats": {k: dataclasses.asdict(v) for k, v in result.llm_stats.items()},
        "warnings": list(getattr(result, "warnings", [])),
    }


def to_anndata(predictions: pd.DataFrame) -> Any:
    """Perturbations × genes AnnData: ``X`` = label (NaN where not asked), one layer of scores per method.

    ``obs`` rows are (cell_line, task, perturbation) with their split; ``var`` rows are genes.
    """
    try:
        import anndata as ad
    except ImportError:
        raise MissingDependencyError(
            "AnnData export needs anndata: pip install 'coreperturb[anndata]'"
        ) from None
    p = predictions.astype({"cell_line": str, "task": str, "perturbation": str, "gene": str})
    obs_key = p["cell_line"] + "|" + p["task"] + "|" + p["perturbation"]
    obs_index = pd.Index(pd.unique(obs_key))
    genes = pd.Index(sorted(pd.unique(p["gene"])))
    oi = positions(obs_index, obs_key)
    gi = positions(genes, p["gene"])
    x = np.full((len(obs_index), len(genes)), np.nan, dtype=np.float32)
    x[oi, gi] = p["label"].to_numpy(dtype=np.float32)
    layers = {}
    for method, grp in p.groupby("method", sort=False):
        layer = np.full_like(x, np.nan)
        rows = positions(obs_index, obs_key[grp.index])
        layer[rows, positions(genes, grp["gene"])] = grp["score"].to_numpy(dtype=np.float32)
        layers[str(method)] = layer
    first = p.drop_duplicates("perturbation").set_index("perturbation")
    obs = pd.DataFrame(
        {
            "cell_line": [k.split("|")[0] for k in obs_index],
            "task": [k.split("|")[1] for k in obs_index],
            "perturbation": [k.split("|", 2)[2] for k in obs_index],
        },
        index=obs_index,
    )
    obs["split"] = first.reindex(obs["perturbation"])["split"].astype(str).to_numpy()
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes), layers=layers)


def _atomic(path: Path, write: Any) -> None:
    atomic_write(path, write)


def write_run(result: Any, config: Any, out: Path, *, anndata: bool = False) -> list[Path]:
    """Write every output of a benchmark run into ``out`` (each file atomically). Returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    _atomic(out / "metrics.csv", lambda t: csv_safe(result.metrics).to_csv(t, index=False))
    written.append(out / "metrics.csv")
    _atomic(out / "predictions.parquet", lambda t: result.predictions.to_parquet(t, index=False))
    written.append(out / "predictions.parquet")
    if result.llm_details is not None:
        _atomic(out / "llm_details.parquet", lambda t: result.llm_details.to_parquet(t, index=False))
        written.append(out / "llm_details.parquet")
    _atomic(out / "examples.json", lambda t: t.write_text(json.dumps(jsonable(result.examples), indent=1)))
    written.append(out / "examples.json")
    if anndata:
        adata = to_anndata(result.predictions)
        _atomic(out / "predictions.h5ad", lambda t: adata.write_h5ad(t))
        written.append(out / "predictions.h5ad")
    manifest = build_manifest(result, config, out)
    _atomic(out / "manifest.json", lambda t: t.write_text(json.dumps(manifest, indent=1, default=str)))
    written.append(out / "manifest.json")
    return written


__all__ = ["build_manifest", "config_hash", "input_files", "sha256_file", "to_anndata", "write_run"]
