"""Knowledge graph: typed relations over genes, stored as sparse matrices."""

from coreperturb.graph._kg import KnowledgeGraph, Relation, relation_from_pairs
from coreperturb.graph._sources import (
    KG_SOURCES,
    available_sources,
    build_kg,
    edge_list_source,
    gmt_source,
)

__all__ = [
    "KG_SOURCES",
    "KnowledgeGraph",
    "Relation",
    "available_sources",
    "build_kg",
    "edge_list_source",
    "gmt_source",
    "relation_from_pairs",
]
