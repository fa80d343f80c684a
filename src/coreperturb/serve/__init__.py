"""``coreperturb serve``: a local web explorer and JSON API over a fitted model (``coreperturb[serve]``)."""

from __future__ import annotations

from pathlib import Path

from coreperturb._defaults import GENE_JOBS
from coreperturb.serve._service import BadRequest, NotFound, PredictionService, Ranked


def open_service(
    model_dir: str | Path, predictions: str | Path | None = None, *, max_gene_jobs: int = GENE_JOBS
) -> PredictionService:
    """Load a model directory (and optionally a prediction file of ``coreperturb predict``) to serve."""
    from coreperturb._model_files import load_model
    from coreperturb.report._prediction_report import read_predictions

    models = load_model(model_dir)
    preds = read_predictions(Path(predictions)) if predictions is not None else None
    return PredictionService(models, preds, max_gene_jobs=max_gene_jobs)


__all__ = ["BadRequest", "NotFound", "PredictionService", "Ranked", "open_service"]
