"""Rendering for the commands: tables, progress bars and step messages (rich on a terminal, log lines
otherwise)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import pandas as pd
from rich.markup import escape

from coreperturb.cli._app import console, fail, out_console

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

    from coreperturb._api import PredictReport
    from coreperturb._explanations import Explanation
    from coreperturb._llm_explanations import LLMExplanation
    from coreperturb.stages import FittedModels, Ranking


def _table(title: str) -> Table:
    from rich.table import Table  # imported when a table is printed, not at every start

    return Table(title=title)


def _progress(text: str) -> Progress:
    """A transient bar: text, bar, done/total, elapsed, remaining (rich.progress loads on a terminal only)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(TextColumn(text), *columns, console=console, transient=True)


def print_metrics(df: pd.DataFrame, title: str) -> None:
    """A wide metrics frame (index = keys) with 4-decimal values, ``—`` for missing ones."""
    table = _table(title)
    for n in df.index.names:
        table.add_column(str(n or ""))
    for c in df.columns:
        table.add_column(str(c), justify="right")
    for idx, row in df.iterrows():
        keys = idx if isinstance(idx, tuple) else (idx,)
        table.add_row(*map(str, keys), *[f"{v:.4f}" if pd.notna(v) else "—" for v in row.to_numpy()])
    out_console.print(table)


def print_frame(df: pd.DataFrame, title: str) -> None:
    """Any frame: floats with 3 decimals, text escaped and folded."""
    table = _table(title)
    for c in df.columns:
        table.add_column(str(c), overflow="fold")
    for _, row in df.iterrows():
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else escape(str(v)) for v in row.to_numpy()])
    out_console.print(table)


def _stamp(msg: str) -> None:
    console.print(escape(f"[{time.strftime('%H:%M:%S')}] {msg}"))


class _EveryTenth:
    """A progress callback that logs a line each time another 10% is done."""

    def __init__(self, fmt: Callable[[int, int, int], str]) -> None:
        self.fmt = fmt
        self.reset()

    def reset(self) -> None:
        self.pct = -1

    def __call__(self, done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1)) // 10 * 10
        if pct != self.pct:
            self.pct = pct
            _stamp(self.fmt(done, total, pct))


@contextlib.contextmanager
def steps() -> Iterator[tuple[Callable[[str], None], Callable[[int, int], None]]]:
    """``(say, tick)``: step messages and an LLM progress bar with ETA (log lines off a terminal)."""
    if not console.is_terminal:
        plain = _EveryTenth(lambda done, total, pct: f"  {done}/{total} queries ({pct}%)")

        def say_plain(msg: str) -> None:
            plain.reset()  # a new step counts from 0% again
            _stamp(msg)

        yield say_plain, plain
        return
    with _progress("{task.description}") as bar:
        task = bar.add_task("starting", total=None)
        step = {"msg": "starting"}

        def say(msg: str) -> None:
            step["msg"] = msg
            bar.update(task, description=msg, total=None, completed=0)

        def tick(done: int, total: int) -> None:
            bar.update(task, description=step["msg"], total=total, completed=done)

        yield say, tick


@contextlib.contextmanager
def bar(total: int, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar over ``total`` units (a log line every 10% off a terminal)."""
    if not console.is_terminal:
        yield _EveryTenth(lambda done, tot, pct: f"  {done}/{tot} {unit} ({pct}%)")
        return
    with _progress(f"predicting {unit}") as progress:
        task = progress.add_task(unit, total=total)
        yield lambda done, tot: progress.update(task, completed=done, total=tot)


def say(message: str) -> None:
    """One escaped line on stderr."""
    console.print(escape(message))


def note(message: str) -> None:
    """A ``note:`` line on stderr."""
    console.print(f"[yellow]note:[/] {escape(message)}")


EVIDENCE_WORDS: dict[str, dict[str, str]] = {
    "de": {"positive": "made the gene DE", "negative": "measured the gene and left it unchanged"},
    "dir": {"positive": "made the gene go up", "negative": "made the gene go down"},
}
"""What positive and negative evidence are, per task, in the words of the explain tables."""


def show_explanation(ex: Explanation, *, wide: bool) -> None:
    """The header, the evidence per side, what the score rests on and (transfer) the other lines."""
    out_console.print(
        f"[bold]{escape(ex.perturbation)} → {escape(ex.gene)}[/] ({escape(ex.cell_line)}, {ex.task}, {ex.method}; "
        f"KG information for the perturbation: {'yes' if ex.kg_info else 'no'})"
    )
    out_console.print(escape(ex.summary()))
    if ex.blend:
        out_console.print(ex.blend, markup=False, highlight=False)
    if ex.rule:
        out_console.print(f"[yellow]{escape(ex.rule)}[/]")
    if not ex.has_evidence:
        out_console.print(f"[yellow]{escape(ex.rests_on())}[/]")
    table = ex.evidence if wide else ex.compact_evidence()
    for side in ("positive", "negative"):
        part = table[table["evidence"] == side].drop(columns="evidence")
        label = EVIDENCE_WORDS[ex.task][side]
        if len(part):
            print_frame(part, f"{side} evidence: related perturbations that {label}")
        else:
            out_console.print(f"{side} evidence: none (no related perturbation that {label})")
    print_frame(
        ex.drivers, "what the score rests on (model features for this pair, on the training table's scale)"
    )
    if ex.context is not None:
        contexts, similar = ex.context
        p, g, line = ex.perturbation, ex.gene, ex.cell_line
        out_console.print("cross-line evidence (the other lines' screens, training rows):")
        for sentence in ex.other_lines():
            out_console.print(f"  {sentence}", markup=False, highlight=False)
        print_frame(contexts, f"{p} in the other cell lines (training rows; pair = {p} → {g})")
        print_frame(
            similar, f"{line} perturbations measured on {g} that responded like {p} in the other lines"
        )


def show_llm_explanation(ex: LLMExplanation) -> None:
    """The prompt, the rationale and the answer of an LLM method; a failed call stops with one line."""
    out_console.print(
        f"[bold]{escape(ex.perturbation)} → {escape(ex.gene)}[/] ({ex.cell_line}, {ex.task}, {ex.method})"
    )
    for m in ex.messages:
        out_console.rule(f"prompt: {m['role']}")
        out_console.print(escape(m["content"]))
    if ex.reasoning_tokens:
        out_console.rule(f"rationale (at most {ex.reasoning_tokens} tokens)")
        out_console.print(escape(ex.rationale or "(the model wrote no rationale)"))
    out_console.rule("answer")
    if ex.error is not None:
        fail(f"the LLM call failed: {ex.error}")
    cal = "calibrated on training queries" if ex.calibrated else "uncalibrated"
    out_console.print(
        f"P(yes) = {ex.p_yes:.3f} (read from {ex.score_method}); score = {ex.score:.3f} ({cal})"
    )


def short_list_note(short: dict[str, int], n_lists: int, ranking: Ranking) -> str:
    """One line on the lists shorter than ``--top``: how many, the shortest ones, and why."""
    what = "perturbations" if ranking.per == "perturbation" else "genes"
    who = "responders" if ranking.per == "perturbation" else "perturbations"
    shown = ", ".join(f"{k} {v}" for k, v in list(short.items())[:6])
    more = ", ..." if len(short) > 6 else ""
    excess = "p_de - p_prior" if ranking.rank_by not in ("up", "down") else f"excess_{ranking.rank_by}"
    floor = (
        f"{excess} >= {ranking.min_excess:g}, with positive evidence"
        if ranking.min_excess is not None
        else "no floor"
    )
    return (
        f"{len(short)} of {n_lists} {what} have fewer than {ranking.top} {who} above the floor ({floor}): "
        f"{shown}{more}; the rest would be guesses (--min-excess -1 lists them anyway)"
    )


def scale_line(models: FittedModels, cell_lines: Sequence[str]) -> str:
    """One line saying which scale p_de, p_prior and the calls are on, per cell line."""
    parts = []
    for line in cell_lines:
        if not models.screened(line):
            genome = any(models.scale_name(s) == "genome" for s in models.source_lines(line))
            how = " (P(DE) averaged on their tables' scale, then mapped to the genome)" if genome else ""
            mean = " log-odds" if models.config.no_screen_mean == "log_odds" else ""
            parts.append(
                f"{line}: no screen, the mean of {', '.join(models.source_lines(line))}'s{mean}{how}"
            )
            continue
        n = len(models.readout_genes(line, "de")) if "de" in models.tasks else 0
        if models.scale_name(line) == "genome":
            parts.append(f"{line}: the chance over its {n:,} readout genes")
        else:
            parts.append(
                f"{line}: the rate among the training table's asked pairs (refit for the genome scale)"
            )
    return (
        f"scale of p_de, p_prior and calls — {'; '.join(parts)}. Design: {models.describe_design(cell_lines)}"
    )


def evidence_line(models: FittedModels, cell_lines: Sequence[str]) -> str:
    """Which other lines' screens each line's default model reads (empty when none reads any)."""
    from coreperturb.stages._blend import blend_of

    method = models.default_method
    parts = []
    for line in cell_lines:
        if line not in models.cell_lines or not (others := models.evidence_lines(line, "de", method)):
            continue
        blend = blend_of(models, line, "de", method)
        mix = f" (answers: {blend.describe()})" if blend is not None else ""
        parts.append(f"{line} reads {', '.join(others)}{mix}")
    return f"cross-line evidence ({method}): {'; '.join(parts)}" if parts else ""


def calls_lines(rep: PredictReport, confidence: float) -> list[str]:
    """Per method with calls: how many rows each call got, and where no pair off a perturbation's own target
    is called ``DE``, the highest P(DE) there (so that no ``DE`` call is not read as no effect)."""
    out: list[str] = []
    tally = rep.calls
    if tally is None:
        return out
    for method, counts in tally.counts.items():
        named = {k: v for k, v in counts.items() if k}
        if not named:
            continue  # LLM methods carry no call
        shown = ", ".join(f"{named.get(c, 0):,} {c}" for c in ("DE", "not DE", "uncertain"))
        if counts.get("", 0):  # an unknown name, or a pair no model could score: the flag column says which
            shown += f", {counts['']:,} without a call (see the flag column)"
        line = f"calls at confidence {confidence:g} ({method}): {shown}"
        best = tally.best.get(method)
        if tally.off_target_de.get(method, 0) == 0 and best is not None:
            p, cell, pert, gene = best
            line += (
                f"; no pair beyond a perturbation's own target reaches a DE call, the highest P(DE) being {p:.2f} "
                f"({pert} → {gene} in {cell}): read P(DE) itself, or a lower --confidence calls pairs whose "
                "P(DE) reaches it"
            )
        out.append(line)
    return out


def after_predict(models: FittedModels, rep: PredictReport) -> None:
    """What ``predict`` says once the file is written: the scale of its numbers (of every line answered),
    what the named perturbations are (screened, hardly known to the KG) and which lists are short."""
    say(scale_line(models, rep.cell_lines))
    for line in calls_lines(rep, models.confidence):
        say(line)
    evidence = evidence_line(models, rep.cell_lines)
    if evidence:
        say(evidence)
    for line in rep.notes:
        say(line)
    short = rep.short_lists()
    if short and rep.ranking is not None and rep.listed is not None:
        say(short_list_note(short, len(rep.listed), rep.ranking))
