"""Where the LLM layer keeps files: the shared response cache and assembled model files."""

from __future__ import annotations

import os
from pathlib import Path

RESPONSES_FILE = "llm_responses.sqlite"


def cache_dir() -> Path:
    """``$COREPERTURB_CACHE_DIR``, else the platform's user cache directory (``~/.cache/coreperturb``)."""
    env = os.environ.get("COREPERTURB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("coreperturb"))


def default_response_cache() -> Path:
    """The shared LLM response cache: ``llm_responses.sqlite`` in :func:`cache_dir`."""
    return cache_dir() / RESPONSES_FILE


__all__ = ["RESPONSES_FILE", "cache_dir", "default_response_cache"]
