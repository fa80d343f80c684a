"""Deprecation periods: keyword-only options still accepted by position, and old module paths.

The public functions take their inputs by position and their options by keyword only (``fit(table, kg,
config, workdir=...)``), as scikit-learn and scanpy do. Until release 0.3, an option passed by position still
works, with a :class:`PositionalArgumentWarning` naming the keyword to use (scikit-learn's
``_deprecate_positional_args`` pattern); then the shim goes and such a call is a ``TypeError``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import inspect
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
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


def renamed_options(**renamed: str) -> Callable[[F], F]:
    """Accept an option under its old name for a while (``old="new"``), with a :class:`FutureWarning` naming
    the new one; passing both is a ``TypeError``."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renamed.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{func.__qualname__}() got both {old}= and its new name {new}=")
                    warnings.warn(
                        f"{func.__qualname__}(): {old}= is now {new}=; the old name stops working in release "
                        f"{REMOVED_IN}",
                        FutureWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import coreperturb.config`` after the module became ``coreperturb._config``: the old path gives the
    same module object, with a :class:`DeprecationWarning` naming the public home of its names.

    It sits last on :data:`sys.meta_path`, so it is asked only about names no file answers: the old public
    paths of modules that are now private (``coreperturb.<package>.<name>`` whose ``_<name>`` exists).
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec for an old module path whose private twin exists; None for any other name."""
        parent, _, last = fullname.rpartition(".")
        if (
            not parent
            or not (parent == "coreperturb" or parent.startswith("coreperturb."))
            or last[:1] == "_"
        ):
            return None
        if path is None or importlib.machinery.PathFinder.find_spec(f"_{last}", path) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, loader_state={})

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        """The private module itself (imported if need be), so both names share one object and its state."""
        parent, _, last = spec.name.rpartition(".")
        warnings.warn(
            f"{spec.name} is private now ({parent}._{last}); import its public names from {parent}. The old "
            f"path stops working in release {REMOVED_IN}",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(f"{parent}._{last}")
        spec.loader_state["spec"] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run; give the module back its own spec (the import machinery set the alias's)."""
        alias = module.__spec__
        assert alias is not None and alias.loader_state is not None  # set by find_spec
        module.__spec__ = alias.loader_state["spec"]


def install_moved_modules() -> None:
    """Answer the old public module paths (once per interpreter)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())


__all__ = [
    "REMOVED_IN",
    "PositionalArgumentWarning",
    "install_moved_modules",
    "keyword_options",
    "renamed_options",
]
