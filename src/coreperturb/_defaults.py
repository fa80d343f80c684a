"""The one home of every default that more than one module (or the command line) uses.

Plain constants with no imports, so the command line reads them without loading the library (``coreperturb
--help`` stays fast) and a change here reaches the CLI, the configuration tree and the functions alike. The
modules that own a setting re-export its default under the same name (``coreperturb.stages.MIN_EXCESS`` is
this ``MIN_EXCESS``).
"""

from __future__ import annotations

# ranking (coreperturb.stages._ranking documents how each was chosen)
RANK_BY_NAMES: tuple[str, ...] = ("excess", "effect", "p_de", "up", "down")
"""The ``rank_by`` values, in the order the help lists them."""
DEFAULT_RANK_BY = "excess"
"""``p_de - p_prior`` on the genome scale. Chosen on training perturbations (``python
benchmarks/genome_ranking.py``: 4 lines × 4 folds, every readout gene of 60 whole-list validation
perturbations per fold): excess DE@10 over the genome 0.096, against 0.065 for ``effect``, 0.050 for
``p_de``, 0.024 for the excess on the table's scale (the ranking of earlier releases), about 0 for a random
order or rarity and −0.055 for the prior."""
MIN_EXCESS = 0.1
"""The floor of a list: a gene (or perturbation) is presented as a responder only where ``p_de - p_prior``
(genome scale) is at least this and some related perturbation made it respond. Chosen on training
perturbations (``python benchmarks/genome_ranking.py``): 0.1 is the lowest band edge above which every band
of predicted excess carried a significant surplus on every line (RPE1's band 0.05–0.1: z 1.94; K562's
0.03–0.05: z 0.71); a default list then holds 2.5–6.2 genes per whole-list perturbation, 22–36% of them DE
over the genome (the base rate is about 0.15%)."""
DEFAULT_CONFIDENCE = 0.9
"""The default confidence of the conformal calls (``--confidence``)."""
CALL_DELTA: dict[str, float] = {"dir": 0.1}
"""Per task: the direction calls' coverage reaches the confidence in each prior bin with probability ``1 -
delta`` over the calibration perturbations drawn, not only on average (``coreperturb.predictors._conformal``);
a task not named here (DE) takes the plain rank. Chosen on training perturbations (``python
benchmarks/call_guarantee.py``): 0.1 (= 1 - the default confidence) is the largest delta whose worst prior
decile of the direction calls, on held-out halves of the calibration rows, came within 0.01 of the confidence
(0.896; 0.884 at 0.2, 0.867 with the plain rank)."""
PAIRS_PER_CHUNK = 250_000
"""Pairs scored at once by ``predict`` (``--chunk-pairs``): bounds memory together with
``coreperturb.stages.MAX_PERTURBATIONS_PER_CHUNK``."""

TOP = 20
"""Rows per list of :func:`coreperturb.stages.top_predictions` and of the explorer's rankings."""
REPORT_TOP = 10
"""Rows per list of a prediction report (``coreperturb report --top``)."""
EXECUTOR = "local"
"""Where LLM calls and ``predict``'s chunks run: ``local`` (in-process) or ``ray`` (Ray Data workers)."""
RAY_WORKERS = 2
"""Concurrent Ray workers with ``executor = "ray"``."""
SERVE_PORT = 8000
"""``coreperturb serve``: the explorer's port."""
GENE_JOBS = 2
"""``coreperturb serve``: genome-wide gene rankings computed at once (more answer 429 until one ends)."""
LLM_SERVER_PORT = 8080
"""``coreperturb llm-server``: the embedded model's OpenAI-compatible port."""

# data and fitting
TASKS: tuple[str, ...] = ("de", "dir")
"""``de``: is the gene differentially expressed; ``dir``: given DE, does it go up."""
DEFAULT_METHODS: tuple[str, ...] = ("gene_frequency", "knn_retrieval", "core_voting")
"""The methods ``fit`` and ``benchmark`` run when none are named."""
OTHER_LINES_WEIGHT = 200.0
"""With several lines, a line's CORE answer pools its own (weight ``w``) and the other lines' (``1 - w``), ``w = N /
(N + OTHER_LINES_WEIGHT)`` (N: the line's own training perturbations; ``FitConfig.other_lines_weight``, 0 = its own
answer alone): the other lines' answer counts as this many perturbations of the line's own screen. Chosen on
training pairs (``python benchmarks/pilot_blend.py``; docs: several screens)."""
OTHER_LINES_POOL = "log_odds"
"""How a line's own answer and the other lines' are pooled: ``log_odds`` (``expit(w * logit(own) + (1 - w) *
logit(others))``, a logarithmic opinion pool) or ``probabilities`` (``FitConfig.other_lines_pool``). Chosen on
training pairs (``python benchmarks/pilot_blend.py``): per-gene AUROC tied, more specific genes first."""
OTHER_LINES_MEAN = "probabilities"
"""How the other lines' answers are averaged into the other lines' answer of a blend: ``probabilities`` (their mean)
or ``log_odds`` (``expit`` of their log-odds' mean; ``FitConfig.other_lines_mean``). Measured on training pairs
(``python benchmarks/pilot_blend.py --means probabilities,log_odds``): log-odds raise pilots' gain and lower full
screens' gain and excess DE@10; kept (docs: results)."""
NO_SCREEN_MEAN = "log_odds"
"""How the screened lines' answers are averaged into the answer for a line with no screen: ``log_odds`` (``expit`` of
their log-odds' mean) or ``probabilities`` (their mean; ``FitConfig.no_screen_mean``). Chosen on training pairs
(``python benchmarks/new_line.py --choose``: the larger mean per-gene AUROC with each line held out in turn)."""
MEASURED_PAIRS = "gene_rates"
"""How another line's measurement of a pair is read: ``gene_rates`` (the chance that a pair measured so in one line
is DE in another, given how often the gene is DE in that other line: a logistic curve per measurement over the
pairs two lines both asked), ``rates`` (that chance over all genes alike) or ``labels`` (as measured: a certainty;
``FitConfig.measured_pairs``). Chosen on training pairs (``python benchmarks/pilot_blend.py``): the best gain
among the rate readings, and no less specific."""
NEGATIVES_PER_PERTURBATION = 200
"""Signature tables (LINCS): non-significant genes sampled per perturbation as negatives."""
SIGNATURE_TEST_FRACTION = 0.3
"""Signature tables (LINCS): share of perturbations held out as unseen test perturbations."""
PREPARE_TEST_FRACTION = 0.25
"""``coreperturb prepare`` (an AnnData screen): share of perturbations held out as unseen."""
DE_MAX_PADJ = 0.05
"""``coreperturb prepare``: the Benjamini–Hochberg adjusted p-value below which a gene is DE."""
DE_MIN_ABS_LFC = 0.25
"""``coreperturb prepare``: the smallest absolute log2 fold change of a DE gene."""
DE_MIN_CELLS = 5
"""``coreperturb prepare``: perturbations with fewer cells are skipped."""
EVIDENCE_ROWS = 8
"""``explain``: evidence rows shown per side (positive, negative)."""

# LLM calls
LLM_BACKEND = "embedded"
CONCURRENCY = 8
"""LLM requests in flight."""
TIMEOUT = 60.0
"""Seconds per LLM request before it is retried."""
MAX_RETRIES = 4
"""Retries per LLM request (timeouts, 429, 5xx)."""
CALIBRATION_QUERIES = 200
"""Held-out training queries an LLM method scores to fit its calibration."""
