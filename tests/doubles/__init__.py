"""Test doubles: a scripted LLM backend (registered as ``scripted`` when this package is imported, which
``tests/conftest.py`` does) and a fake OpenAI-compatible server (:mod:`tests.doubles.fake_server`).

They live with the tests, not in the package: nothing a user installs answers with made-up numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from coreperturb.llm._backends import BACKENDS, Backend, Completion, Message, SamplingParams


@BACKENDS.register("scripted")
class ScriptedBackend(Backend):
    """Deterministic fake LLM for tests: ``p_yes(prompt_text) -> float`` becomes Yes/No log-probabilities.

    Args:
        p_yes: Function of the concatenated message contents.
        model: Model id to report.
        with_logprobs: If False, answer with verbalised text only (exercises the fallback).
    """

    def __init__(
        self, p_yes: Callable[[str], float] | None = None, model: str = "scripted", with_logprobs: bool = True
    ) -> None:
        self.p_yes = p_yes or (lambda _: 0.5)
        self.model_id = model
        self.with_logprobs = with_logprobs
        self.calls: list[str] = []
        self.concurrency = 4

    async def chat(self, messages: Sequence[Message], params: SamplingParams) -> Completion:
        """Answer from the script."""
        text = "\n".join(m["content"] for m in messages)
        self.calls.append(text)
        p = min(max(float(self.p_yes(text)), 1e-6), 1 - 1e-6)
        n_tok = len(text.split())
        if "explain your reasoning" in messages[-1]["content"]:  # reasoning mode: rationale first
            why = f"The evidence weighs {'for' if p >= 0.5 else 'against'} a response."
            return Completion(why, (), prompt_tokens=n_tok, completion_tokens=len(why.split()))
        if self.with_logprobs and params.top_logprobs:
            tops = (("Yes", math.log(p)), ("No", math.log(1 - p)))
            return Completion("Yes" if p >= 0.5 else "No", tops, prompt_tokens=n_tok, completion_tokens=1)
        answer = f"{'Yes' if p >= 0.5 else 'No'}, confidence {round(100 * max(p, 1 - p))}"
        return Completion(answer, (), prompt_tokens=n_tok, completion_tokens=4)


__all__ = ["ScriptedBackend"]
