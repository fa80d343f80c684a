"""``coreperturb serve``: a local web explorer and JSON API over a fitted model (``coreperturb[serve]``)."""

from coreperturb.serve.service import BadRequest, NotFound, PredictionService, Ranked

__all__ = ["BadRequest", "NotFound", "PredictionService", "Ranked"]
