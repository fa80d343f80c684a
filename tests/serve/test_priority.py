"""Answers someone waits for go ahead of background gene rankings, whose results stay cached."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from coreperturb._model_files import load_model
from coreperturb.serve._service import Pending, PredictionService


def test_a_gene_ranking_in_the_background_yields_to_answers(model_dir: Path) -> None:
    svc = PredictionService(load_model(model_dir), cache_size=2, answer_within_s=0, gene_chunk=20)
    gene = svc.models.readout_genes(svc.cell_lines[0])[3]
    with contextlib.suppress(Pending):
        svc.gene(gene)  # starts the background ranking
    perts = svc.candidates(svc.cell_lines[0])[:6]
    slowest = 0.0
    for p in perts:  # answered between background chunks, never after the whole ranking
        t = time.perf_counter()
        svc.perturbation(p, top=3)
        slowest = max(slowest, time.perf_counter() - t)
    deadline = time.time() + 120
    while True:
        try:
            ranked = svc.gene(gene, top=5, min_excess=None)
            break
        except Pending:
            assert time.time() < deadline
            time.sleep(0.2)
    assert len(ranked.rows) == 5
    for p in perts:  # more perturbation answers than the perturbation cache holds
        svc.perturbation(p, top=3)
    assert svc.gene(gene, top=5, min_excess=None).rows.equals(
        ranked.rows
    )  # still cached: no second background job
    assert not [t for t in threading.enumerate() if t.name.startswith("gene-")]
    assert slowest < 30


def test_a_gene_page_answers_without_coming_back(model_dir: Path) -> None:
    svc = PredictionService(load_model(model_dir))  # waits up to answer_within_s for the ranking
    gene = svc.models.readout_genes(svc.cell_lines[0])[5]
    ranked = svc.gene(gene, top=5, min_excess=None)  # no Pending: answered in the same request
    assert len(ranked.rows) == 5 and (ranked.rows["gene"] == gene).all()
    assert not svc._jobs
