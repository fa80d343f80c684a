"""A tiny name → object registry used for KG sources, predictors and metrics."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from coreperturb.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (usually classes or factories).

    Args:
        kind: What is registered, used in error messages ("predictor", "metric", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._info: dict[str, Any] = {}

    def register(self, name: str, info: Any = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``, with its metadata ``info`` (for example which file a
        KG source reads; :meth:`info` returns it)."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            self._lazy.pop(name, None)
            if info is not None:
                self._info[name] = info
            return obj

        return deco

    def info(self, name: str) -> Any:
        """The metadata registered with ``name`` (``None`` when it was registered without any).

        Raises:
            UnknownNameError: ``name`` is not registered.
        """
        self.get(name)
        return self._info.get(name)

    def in_order(self) -> list[str]:
        """The names registered so far, in the order they were registered."""
        return list(self._items)

    def lazy(self, modules: Mapping[str, str]) -> None:
        """Announce names whose module registers them when it is imported: the first :meth:`get` of such a
        name imports its module (so that using one predictor does not import the others' dependencies)."""
        self._lazy.update({n: m for n, m in modules.items() if n not in self._items})

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` or raise a clear error."""
        if name not in self._items and name in self._lazy:
            importlib.import_module(self._lazy[name])
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted (announced ones included)."""
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
