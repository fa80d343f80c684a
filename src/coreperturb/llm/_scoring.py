"""P(yes) from an answer: next-token log-probabilities first, verbalised confidence as the fallback."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from coreperturb.llm._backends import Completion

YES_TOKENS = frozenset({"yes", "y", "true"})
NO_TOKENS = frozenset({"no", "n", "false"})
VERBAL_SUFFIX = "\nReply in the form '<Yes or No>, confidence <0-100>' where confidence is how sure you are of your answer."
_WORD = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_CONF = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*(%|/\s*100)?")


@dataclass(frozen=True)
class Score:
    """A probability and how it was obtained (``logprobs`` or ``verbal``)."""

    p_yes: float
    method: str


def _norm(token: str) -> str:
    return token.strip().strip(".,:;!\"'*").lower()


def p_yes_from_logprobs(top: tuple[tuple[str, float], ...]) -> float | None:
    """Sum the probability of Yes-like and No-like first tokens (any case / leading space) and renormalise.

    Returns:
        P(yes) in [0, 1], or ``None`` if neither variant is among the alternatives.
    """
    yes = sum(math.exp(lp) for t, lp in top if _norm(t) in YES_TOKENS)
    no = sum(math.exp(lp) for t, lp in top if _norm(t) in NO_TOKENS)
    if yes + no <= 0:
        return None
    return yes / (yes + no)


def p_yes_from_text(text: str) -> float | None:
    """Verbalised confidence: ``"Yes, confidence 80"`` → 0.8, ``"No (90%)"`` → 0.1; a bare Yes/No → 0.5±0.25.

    Returns ``None`` when the text holds no Yes/No answer.
    """
    m = _WORD.search(text)
    if not m:
        return None
    says_yes = m.group(1).lower() == "yes"
    rest = text[m.end() :]
    c = _CONF.search(rest)
    conf = 0.75
    if c:
        v = float(c.group(1))
        conf = v / 100 if (v > 1 or c.group(2)) else v
        conf = min(max(conf, 0.0), 1.0)
    return conf if says_yes else 1 - conf


def score_completion(c: Completion) -> Score | None:
    """P(yes) from log-probabilities when present, else from the text; ``None`` if neither works."""
    p = p_yes_from_logprobs(c.top_logprobs)
    if p is not None:
        return Score(p, "logprobs")
    v = p_yes_from_text(c.text)
    return Score(v, "verbal") if v is not None else None


__all__ = ["VERBAL_SUFFIX", "Score", "p_yes_from_logprobs", "p_yes_from_text", "score_completion"]
