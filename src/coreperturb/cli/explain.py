"""``coreperturb explain``: the evidence behind one (perturbation, gene) prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coreperturb import _defaults as d
from coreperturb.cli import _options as o
from coreperturb.cli._app import command, imports_done, status
from coreperturb.errors import ConfigError


@command()
def explain(
    *,
    perturbation: Annotated[str, typer.Option(help="Perturbation (gene symbol, DrugBank id or drug name).")],
    gene: Annotated[str, typer.Option(help="Readout gene.")],
    model_dir: o.ModelDirOpt = None,
    model: o.OldModelDirOpt = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Without --model-dir: directory of {cell_line}-{task}.csv files (default: synthetic)."
        ),
    ] = None,
    kg_dir: Annotated[Path | None, typer.Option(help="Directory of KG source files.")] = None,
    cell_line: Annotated[str | None, typer.Option(help="Cell line (default: the first present).")] = None,
    task: Annotated[str, typer.Option(help="de or dir.")] = "de",
    evidence_rows: Annotated[int, typer.Option(min=1, help="Evidence rows per side.")] = d.EVIDENCE_ROWS,
    top: Annotated[
        int | None, typer.Option("--top", hidden=True, help="Deprecated: --evidence-rows.")
    ] = None,
    wide: Annotated[
        bool, typer.Option("--wide", help="Also show the similarity of every KG relation per evidence row.")
    ] = False,
    transfer: Annotated[
        bool,
        typer.Option(
            "--transfer",
            help="Fit core_voting_transfer: also use the other cell lines' training rows and show how the "
            "perturbation behaved there (with --model-dir: use the model's core_voting_transfer).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    method: Annotated[
        str,
        typer.Option(
            help="core_voting (evidence table), or core_reasoning / llm_isolated: print the LLM's prompt, its "
            "rationale (with --reasoning-tokens) and P(yes)."
        ),
    ] = "core_voting",
    llm: o.LlmOpt = "embedded",
    llm_model: Annotated[
        str | None,
        typer.Option(help="LLM model name (openai/vllm) or GGUF path (embedded) without --model-dir."),
    ] = None,
    base_url: o.BaseUrlOpt = None,
    reasoning_tokens: Annotated[
        int | None,
        typer.Option(
            "--reasoning-tokens",
            min=0,
            help="Rationale length for LLM methods (default: the model's; 0 = none).",
        ),
    ] = None,
    response_cache: o.ResponseCacheOpt = None,
    cache: o.OldCacheOpt = None,
) -> None:
    """Show the positive and negative evidence for one (perturbation, gene), with the KG links behind it.

    Prints P(DE) (P(up | DE) with --task dir) and its call (DE, not DE or uncertain at the model's confidence)
    beside the gene's prior and the excess over it, then each related
    perturbation with its combined similarity, the KG relation that links it most strongly and that link in
    words (--wide adds every relation's similarity), and the model features the score rests on; a pair
    without related evidence says so.

    With --method core_reasoning or llm_isolated it prints the prompt the LLM reads, its rationale (with
    --reasoning-tokens N) and P(yes): raw, and calibrated when the LLM method comes from a --model-dir fitted
    with calibration.

    Without --model-dir, CORE-Voting is fitted on the training split of the cell line; the perturbation
    itself is left out of the evidence pool if it is a training perturbation. With --transfer every cell line
    in --data-dir is loaded, and the perturbation's training rows in the OTHER lines are shown and used as
    evidence. A perturbation that neither the training rows nor the KG know, or a gene that was never a
    readout in training, stops with an error instead of printing a prior dressed up as a prediction.
    """
    from coreperturb._config import BenchmarkConfig
    from coreperturb._explanations import explain as library_explain
    from coreperturb._llm_explanations import explain_llm
    from coreperturb._model_files import load_model
    from coreperturb.cli._render import show_explanation, show_llm_explanation
    from coreperturb.predictors._base import LLM_METHODS

    imports_done()
    if method not in ("core_voting", *LLM_METHODS):
        raise ConfigError(f"--method must be core_voting, core_reasoning or llm_isolated, not {method!r}")
    path = o.deprecated("--model-dir", "--model", model_dir, model)
    models = None
    if path is not None:
        with status(f"loading {path}"):
            models = load_model(path)
    config = None
    if models is None:
        config = BenchmarkConfig.from_options(
            data_dir=data_dir, kg_dir=kg_dir, seed=seed, llm=llm, llm_model=llm_model, base_url=base_url
        )
    if method in LLM_METHODS:
        with status(f"asking the LLM ({method})"):
            ex = explain_llm(
                method, perturbation, gene, models=models, config=config, cell_line=cell_line, task=task,
                reasoning_tokens=reasoning_tokens,
                response_cache=o.deprecated("--response-cache", "--cache", response_cache, cache),
            )  # fmt: skip
        show_llm_explanation(ex)
        return
    with status("explaining" if models is not None else "fitting CORE-Voting and explaining"):
        expl = library_explain(
            perturbation, gene, models, config=config, cell_line=cell_line, task=task,
            top=o.deprecated("--evidence-rows", "--top", None, top) or evidence_rows, transfer=transfer,
        )  # fmt: skip
    show_explanation(expl, wide=wide)
