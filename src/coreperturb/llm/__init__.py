"""LLM layer: backends, prompt templates, P(yes) scoring, response cache and the resumable runner."""

from coreperturb.llm.backends import (
    BACKENDS,
    Backend,
    Completion,
    EmbeddedBackend,
    LLMError,
    LLMSettings,
    OpenAIBackend,
    SamplingParams,
    ScriptedBackend,
    make_backend,
)
from coreperturb.llm.cache import LLMCache, prompt_key
from coreperturb.llm.prompts import TEMPLATES, PromptBuilder, PromptTemplate, template_for
from coreperturb.llm.runner import LLMRunner, RunStats
from coreperturb.llm.scoring import p_yes_from_logprobs, p_yes_from_text, score_completion

__all__ = [
    "BACKENDS",
    "TEMPLATES",
    "Backend",
    "Completion",
    "EmbeddedBackend",
    "LLMCache",
    "LLMError",
    "LLMRunner",
    "LLMSettings",
    "OpenAIBackend",
    "PromptBuilder",
    "PromptTemplate",
    "RunStats",
    "SamplingParams",
    "ScriptedBackend",
    "make_backend",
    "p_yes_from_logprobs",
    "p_yes_from_text",
    "prompt_key",
    "score_completion",
    "template_for",
]
