"""The fit configuration of a ``model.json``, of this release or of an earlier one (whose LLM settings were
kept flat beside the fit settings): model files of every readable format load into one :class:`FitConfig`."""

from __future__ import annotations

import dataclasses
from typing import Any

from coreperturb._config import FitConfig, LLMConfig

_OLD_LLM_KEYS = {
    # model.json of earlier releases kept the LLM settings flat beside the fit settings
    "calibration_queries": "calibration_queries",
    "cache_path": "response_cache",
    "retry_failed": "retry_failed",
    "executor": "executor",
    "ray_address": "ray_address",
    "ray_workers": "ray_workers",
    "reasoning_tokens": "reasoning_tokens",
}
_OLD_SETTINGS_KEYS = {
    "backend": "llm",
    "model": "llm_model",
    "base_url": "base_url",
    "concurrency": "concurrency",
    "requests_per_second": "requests_per_second",
    "timeout": "timeout",
    "max_retries": "max_retries",
}


def fit_config_of(raw: dict[str, Any]) -> FitConfig:
    """The :class:`FitConfig` of a model.json (this release's tree, or the flat form of earlier ones)."""
    llm_fields = {f.name for f in dataclasses.fields(LLMConfig)}
    if isinstance(raw.get("llm_config"), dict):
        llm = {k: v for k, v in raw["llm_config"].items() if k in llm_fields}
    else:
        llm = {new: raw[old] for old, new in _OLD_LLM_KEYS.items() if raw.get(old) is not None}
        llm.update(
            {
                new: v
                for old, new in _OLD_SETTINGS_KEYS.items()
                if (v := (raw.get("llm") or {}).get(old)) is not None
            }
        )
    fit_fields = {f.name for f in dataclasses.fields(FitConfig)} - {"llm_config"}
    cfg = {k: v for k, v in raw.items() if k in fit_fields}
    cfg["methods"] = tuple(cfg.get("methods", ()))
    # models of earlier releases answered each line from its own model alone (their calibration rows say so)
    cfg.setdefault("other_lines_weight", 0.0)
    # and, where they blended, pooled probabilities and read another line's measurement as its label
    cfg.setdefault("other_lines_pool", "probabilities")
    cfg.setdefault("measured_pairs", "labels")
    # and averaged several lines' probabilities
    cfg.setdefault("other_lines_mean", "probabilities")
    cfg.setdefault("no_screen_mean", "probabilities")
    return FitConfig(**cfg, llm_config=LLMConfig(**llm))


__all__ = ["fit_config_of"]
