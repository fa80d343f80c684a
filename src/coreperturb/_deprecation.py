"""Keyword-only options with a deprecation period for callers that still pass them by position.

The public functions take their inputs by position and their options by keyword only (``fit(table, kg,
config, workdir=...)``), as scikit-learn and scanpy do. Until release 0.3, an option passed by position still
works, with a :class:`PositionalArgumentWarning` naming the keyword to use (scikit-learn's
``_deprecate_positional_args`` pattern); then the shim goes and such a call is a ``TypeError``.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

REMOVED_IN = "0.3"
"""The release in which options passed by position stop working."""


class PositionalArgumentWarning(FutureWarning):
    """An option of a public function was passed by position; pass it by keyword."""


def keyword_options(func: F) -> F:
    """Accept the keyword-only parameters of ``func`` by position for a while, in their declared order, with a
    :class:`PositionalArgumentWarning`. The declared order is the old positional order."""
    sig = inspect.signature(func)
    positional = [
        p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    options = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        extra = len(args) - len(positional)
        if extra <= 0:
            return func(*args, **kwargs)
        if extra > len(options):
            raise TypeError(
                f"{func.__qualname__}() takes {len(positional)} positional arguments and "
                f"{len(options)} keyword options, but {len(args)} arguments were given by position"
            )
        moved = dict(zip(options, args[len(positional) :], strict=False))
        clash = sorted(set(moved) & set(kwargs))
        if clash:
            raise TypeError(f"{func.__qualname__}() got multiple values for {', '.join(clash)}")
        warnings.warn(
            f"{func.__qualname__}(): pass {', '.join(f'{k}=...' for k in moved)} by keyword; options passed "
            f"by position stop working in release {REMOVED_IN}",
            PositionalArgumentWarning,
            stacklevel=2,
        )
        return func(*args[: len(positional)], **moved, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = ["REMOVED_IN", "PositionalArgumentWarning", "keyword_options"]
