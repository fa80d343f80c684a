"""``coreperturb predict``: score perturbations × genes (or listed pairs) with a saved model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coreperturb import _defaults as d
from coreperturb.cli import _options as o
from coreperturb.cli._app import command, imports_done, status, use_threads
from coreperturb.errors import ConfigError


@command()
def predict(
    *,
    model_dir: o.ModelDirOpt = None,
    model: o.OldModelDirOpt = None,
    perturbations: Annotated[
        str | None,
        typer.Option(
            help="P1,P2 | @file.txt (one per line) | all (every KG gene, or drug for a drug model, with KG "
            "information that is not a training perturbation of the cell line)."
        ),
    ] = None,
    genes: Annotated[
        str, typer.Option(help="all (the cell line's training readout genes) | G1,G2 | @file.txt.")
    ] = "all",
    queries: Annotated[
        Path | None,
        typer.Option(
            help="Instead of --perturbations x --genes: a table of pairs (CSV/TSV/Parquet; columns perturbation or "
            "pert, gene, optional cell_line)."
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(help="predictions.parquet | .csv | .h5ad (perturbations x genes, layers p_de, p_up)."),
    ] = Path("predictions.parquet"),
    cell_lines: Annotated[
        str | None, typer.Option(help="Comma-separated cell lines (default: every line in the model).")
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(help="Comma-separated fitted methods, or all (default: the model's CORE method)."),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Keep the N best genes per perturbation (with --per gene: the N best perturbations per gene), "
            "ranked by --rank-by.",
        ),
    ] = None,
    rank_by: o.RankByOpt = d.DEFAULT_RANK_BY,
    min_excess: o.MinExcessOpt = d.MIN_EXCESS,
    confidence: o.ConfidenceOpt = d.DEFAULT_CONFIDENCE,
    per: Annotated[
        str,
        typer.Option(
            help="perturbation (which genes does each perturbation change) or gene (which perturbations change "
            "each gene, e.g. --genes HBG2 --perturbations all --per gene --rank-by down)."
        ),
    ] = "perturbation",
    chunk_pairs: Annotated[
        int, typer.Option(help="Pairs scored at once (bounds memory).", min=1000)
    ] = d.PAIRS_PER_CHUNK,
    response_cache: o.ResponseCacheOpt = None,
    cache: o.OldCacheOpt = None,
    reasoning_tokens: Annotated[
        int | None,
        typer.Option(
            "--reasoning-tokens",
            min=0,
            help="Override the model's rationale length for LLM methods (0 = none).",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="local, or ray: score the chunks on Ray Data workers (pip install 'coreperturb[ray]'); the "
            "output is the same."
        ),
    ] = d.EXECUTOR,
    ray_address: o.RayAddressOpt = None,
    ray_workers: o.RayWorkersOpt = d.RAY_WORKERS,
    threads: o.ThreadsOpt = None,
    profile: Annotated[
        bool, typer.Option(help="Print the seconds per stage: retrieval, features, trees, tables, writing.")
    ] = False,
) -> None:
    """Predict P(DE) and P(up | DE) for perturbations x genes with a saved model.

    Writes one row per (cell_line, perturbation, gene, method) with p_de, p_up (NaN without a direction
    model), p_prior (the gene's DE rate under the training perturbations, on p_de's scale: what gene frequency alone
    predicts), excess (p_de - p_prior:
    how much more likely DE under this perturbation than usual), effect (the shrunk log risk ratio of p_de
    over p_prior), p_de_up / p_de_down (P(DE and up / down)), effect_up / effect_down, n_pos_evidence / n_neg_evidence (related
    training perturbations that made the gene DE / left it unchanged), kg_coverage (share of KG relations that
    know the perturbation; 0 = the score is the gene's prior), on_target (the perturbation's own target: the
    modality's rule decides it), call / call_dir (DE, not DE or uncertain; up, down or uncertain: conformal
    calls at --confidence) and flag (unknown_perturbation, no_kg_information, training_perturbation,
    unreachable, on_target, unknown_gene). With --top, a list holds only the rows that pass the floor
    (--min-excess), and the command says which lists are short. Names are matched exactly, then ignoring case
    (fth1 -> FTH1) and drug names -> DrugBank ids, with a warning; unknown names are warned about and their
    rows flagged. Rows are streamed to disk chunk by chunk.
    """
    from coreperturb._api import predict_to_file
    from coreperturb._config import split_names
    from coreperturb._model_files import load_model
    from coreperturb.cli._render import after_predict, bar, say
    from coreperturb.stages import Ranking

    imports_done()
    use_threads(threads)
    path = o.model_dir(model_dir, model)
    if top is None and (rank_by != d.DEFAULT_RANK_BY or per != "perturbation"):
        raise ConfigError("--rank-by and --per choose what --top keeps; give --top N too")
    with status(f"loading {path}"):
        models = load_model(path)
    models.confidence = confidence
    ranking = None if top is None else Ranking(top, rank_by, per, None if min_excess <= -1 else min_excess)
    rep = predict_to_file(
        models,
        out,
        perturbations=perturbations,
        genes=genes,
        queries=queries,
        cell_lines=split_names(cell_lines),
        methods=split_names(methods),
        ranking=ranking,
        pairs_per_chunk=chunk_pairs,
        executor=executor,
        ray_address=ray_address,
        ray_workers=ray_workers,
        response_cache=o.deprecated("--response-cache", "--cache", response_cache, cache),
        reasoning_tokens=reasoning_tokens,
        progress_bar=bar,
        profile=profile,
    )
    if rep.profile is not None:
        say(rep.profile.render(rep.pairs))
    say(
        f"wrote {rep.rows} rows to {rep.path} ({rep.pairs} pairs x {len(rep.methods)} method(s) in "
        f"{rep.seconds:.1f}s, {rep.pairs * len(rep.methods) / max(rep.seconds, 1e-9):,.0f} pairs/s)"
    )
    after_predict(models, rep)
