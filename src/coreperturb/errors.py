"""Exceptions raised for bad user input."""

from __future__ import annotations


class CorePerturbError(Exception):
    """Base class for errors that the CLI reports as one clear line (no traceback)."""


class DataValidationError(CorePerturbError, ValueError):
    """A data file is malformed; the message names the file, row and column."""


class KnowledgeGraphError(CorePerturbError, ValueError):
    """A knowledge-graph source could not be loaded; the message names the file and line."""


class UnknownNameError(CorePerturbError, KeyError):
    """A registry lookup failed; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0]) if self.args else ""


class ConfigError(CorePerturbError, ValueError):
    """A setting is unknown or out of range; the message names the setting (as the config tree does)."""


class MissingDependencyError(CorePerturbError, ImportError):
    """An optional dependency is not installed; the message says what to install."""
