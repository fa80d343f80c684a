"""LLM layer: backends, prompt templates, P(yes) scoring, response cache and the resumable runner."""

from coreperturb.llm._backends import (
    BACKENDS,
    Backend,
    Completion,
    EmbeddedBackend,
    LLMError,
    LLMSettings,
    OpenAIBackend,
    SamplingParams,
    make_backend,
)
from coreperturb.llm._cache import LLMCache
from coreperturb.llm._prompts import TEMPLATES, PromptTemplate

__all__ = [
    "BACKENDS",
    "TEMPLATES",
    "Backend",
    "Completion",
    "EmbeddedBackend",
    "LLMCache",
    "LLMError",
    "LLMSettings",
    "OpenAIBackend",
    "PromptTemplate",
    "SamplingParams",
    "make_backend",
]
