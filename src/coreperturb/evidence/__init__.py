"""Evidence: related observed perturbations, organised on the same readout gene into positive / negative."""

from coreperturb.evidence.context import ContextEvidence, check_context
from coreperturb.evidence.contrastive import ContrastiveEvidence, build_evidence, retrieve_evidence
from coreperturb.evidence.features import FeatureParams, evidence_features
from coreperturb.evidence.pool import ObservationPool
from coreperturb.evidence.similarity import SimilarityBundle, keep_top_k, relational_similarity

__all__ = [
    "ContextEvidence",
    "ContrastiveEvidence",
    "FeatureParams",
    "ObservationPool",
    "SimilarityBundle",
    "build_evidence",
    "check_context",
    "evidence_features",
    "keep_top_k",
    "relational_similarity",
    "retrieve_evidence",
]
