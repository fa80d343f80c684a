"""Are two runs the same? Benchmark output folders (predictions, metrics) and model directories (every file;
``estimators.skops`` of earlier formats by content, since skops names its members after object ids;
``model.json`` key by key).

    python benchmarks/compare_runs.py --runs OLD_RUN NEW_RUN --models OLD_MODEL NEW_MODEL

Used to show that a refactor keeps predictions bit-identical: run the old and the new code with the same
command and seed, then compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd


def compare_runs(old: Path, new: Path) -> None:
    """Predictions: the score and every column both runs wrote (a release may add columns; they are listed);
    metrics: the rows both runs hold, value by value (added metrics are listed)."""
    a, b = pd.read_parquet(old / "predictions.parquet"), pd.read_parquet(new / "predictions.parquet")
    common = [c for c in a.columns if c in b.columns and c != "score"]
    added = [c for c in b.columns if c not in a.columns]
    same_keys = a[common].equals(b[common])
    diff = (
        float(np.nanmax(np.abs(a["score"].to_numpy() - b["score"].to_numpy()))) if len(a) == len(b) else None
    )
    print(
        f"predictions.parquet: {len(a)} vs {len(b)} rows; the {len(common)} other common columns equal: "
        f"{same_keys}; max |score diff|: {diff}" + (f"; added columns: {', '.join(added)}" if added else "")
    )
    ma, mb = pd.read_csv(old / "metrics.csv"), pd.read_csv(new / "metrics.csv")
    key = ["cell_line", "task", "method", "metric"]
    both = ma.merge(mb, on=key, how="inner", suffixes=("_old", "_new"))
    same = np.allclose(both["value_old"], both["value_new"], rtol=0, atol=0, equal_nan=True)
    new_metrics = sorted(set(mb["metric"]) - set(ma["metric"]))
    print(
        f"metrics.csv: {len(ma)} vs {len(mb)} rows; {len(both)} in both, values equal: {same}"
        + (f"; added metrics: {', '.join(new_metrics)}" if new_metrics else "")
    )
    if not same:
        differ = both[~np.isclose(both["value_old"], both["value_new"], rtol=0, atol=0, equal_nan=True)]
        print(differ.to_string(index=False))


def _skops_content(path: Path) -> list[str]:
    out = []
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            data = z.read(name)
            if name == "schema.json":
                data = re.sub(rb"\d{6,}", b"ID", data)  # member names are object ids
            out.append(hashlib.sha256(data).hexdigest())
    return sorted(out)


def _flat(d: object, prefix: str = "") -> dict[str, object]:
    if isinstance(d, dict):
        out: dict[str, object] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def compare_models(old: Path, new: Path) -> None:
    for f in sorted(p.name for p in old.iterdir()):
        if f == "model.json":
            continue
        if f.endswith(".skops"):
            same = _skops_content(old / f) == _skops_content(new / f)
            print(f"{f}: content identical (object-id member names aside): {same}")
        else:
            same = (old / f).read_bytes() == (new / f).read_bytes()
            print(f"{f}: byte-identical: {same}")
    a, b = (_flat(json.loads((d / "model.json").read_text())) for d in (old, new))
    skip = ("created", "content_sha256", "files.estimators.skops", "kg.recipe.kg_dir")
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and not k.startswith(skip))
    print(f"model.json: keys that differ (creation time, digests and temp paths aside): {diff or 'none'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs=2, type=Path, metavar=("OLD", "NEW"))
    ap.add_argument("--models", nargs=2, type=Path, metavar=("OLD", "NEW"))
    args = ap.parse_args()
    if args.runs:
        compare_runs(*args.runs)
    if args.models:
        compare_models(*args.models)


if __name__ == "__main__":
    main()
