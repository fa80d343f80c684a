"""Evidence: related observed perturbations, organised on the same readout gene into positive / negative."""

from coreperturb.evidence._context import ContextEvidence
from coreperturb.evidence._contrastive import ContrastiveEvidence, build_evidence, retrieve_evidence
from coreperturb.evidence._features import FeatureParams
from coreperturb.evidence._similarity import SimilarityBundle, relational_similarity

__all__ = [
    "ContextEvidence",
    "ContrastiveEvidence",
    "FeatureParams",
    "SimilarityBundle",
    "build_evidence",
    "relational_similarity",
    "retrieve_evidence",
]
