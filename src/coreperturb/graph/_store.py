"""A knowledge graph on disk: sparse matrices in ``.npz`` (no pickles), names and labels in JSON.

:func:`kg_hash` is a content hash of everything that shapes predictions (genes, relations, weights,
feature ids, drug targets), so a model can check that it is paired with the KG it was fitted on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coreperturb.graph._kg import KnowledgeGraph, Relation

KG_ARRAYS = "kg.npz"
KG_META = "kg.json"


def kg_hash(kg: KnowledgeGraph) -> str:
    """sha256 over the KG's genes, relations (kind, weights, feature ids) and perturbation targets."""
    h = hashlib.sha256()

    def put(b: bytes) -> None:
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    put("\n".join(map(str, kg.genes)).encode())
    for name, rel in kg.relations.items():
        m = sp.csr_matrix(rel.matrix).sorted_indices()  # a sorted copy: never reorder the KG in place
        put(f"{name}\t{rel.kind}\t{m.shape}".encode())
        put(np.ascontiguousarray(m.indptr, dtype=np.int64).tobytes())
        put(np.ascontiguousarray(m.indices, dtype=np.int64).tobytes())
        put(np.ascontiguousarray(m.data, dtype=np.float64).tobytes())
        put("\n".join(map(str, rel.feature_ids)).encode())
        if rel.row_ids is not None:
            put("\n".join(map(str, rel.row_ids)).encode())
    for p in sorted(kg.targets):
        put(f"{p}\t{','.join(kg.targets[p])}".encode())
    return h.hexdigest()


def save_kg(kg: KnowledgeGraph, directory: str | Path) -> list[Path]:
    """Write ``kg.npz`` (CSR arrays per relation) and ``kg.json`` (genes, feature ids / labels, targets).

    Returns:
        The two paths written.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    rels: list[dict[str, Any]] = []
    for i, (name, rel) in enumerate(kg.relations.items()):
        # stored in memory order (not re-sorted): the loaded KG sums in the same order, bit for bit
        m = sp.csr_matrix(rel.matrix)
        arrays[f"r{i}_indptr"] = m.indptr.astype(np.int64)
        arrays[f"r{i}_indices"] = m.indices.astype(np.int32)
        arrays[f"r{i}_data"] = m.data.astype(np.float64)
        rels.append(
            {
                "name": name,
                "kind": rel.kind,
                "shape": list(m.shape),
                "feature_ids": [str(x) for x in rel.feature_ids],
                "feature_labels": [str(x) for x in rel.feature_labels],
                **({"row_ids": [str(x) for x in rel.row_ids]} if rel.row_ids is not None else {}),
            }
        )
    np.savez_compressed(d / KG_ARRAYS, **arrays)  # type: ignore[arg-type]
    meta = {
        "genes": [str(g) for g in kg.genes],
        "relations": rels,
        "targets": {k: list(v) for k, v in kg.targets.items()},
        "names": dict(kg.names),
    }
    (d / KG_META).write_text(json.dumps(meta))
    return [d / KG_ARRAYS, d / KG_META]


def load_kg(directory: str | Path) -> KnowledgeGraph:
    """Inverse of :func:`save_kg` (``allow_pickle=False``: no code is ever unpickled).

    Raises:
        ValueError: The files are inconsistent (the message names the file).
    """
    d = Path(directory)
    meta = json.loads((d / KG_META).read_text())
    relations: dict[str, Relation] = {}
    with np.load(d / KG_ARRAYS, allow_pickle=False) as z:
        for i, r in enumerate(meta["relations"]):
            try:
                m = sp.csr_matrix(
                    (z[f"r{i}_data"], z[f"r{i}_indices"], z[f"r{i}_indptr"]), shape=tuple(r["shape"])
                )
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{d / KG_ARRAYS}: relation {r['name']!r} is unreadable: {exc}") from None
            relations[r["name"]] = Relation(
                name=r["name"],
                kind=r["kind"],
                matrix=m,
                feature_ids=np.asarray(r["feature_ids"], dtype=object),
                feature_labels=np.asarray(r["feature_labels"], dtype=object),
                row_ids=pd.Index(r["row_ids"], dtype=object) if "row_ids" in r else None,
            )
    return KnowledgeGraph(
        genes=pd.Index(meta["genes"], dtype=object),
        relations=relations,
        targets={k: tuple(v) for k, v in meta["targets"].items()},
        names=dict(meta.get("names", {})),
    )


__all__ = ["KG_ARRAYS", "KG_META", "kg_hash", "load_kg", "save_kg"]
