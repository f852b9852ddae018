"""Models and tasks found by name, so that a new experiment is a config plus at most a new file.

A module registers its classes with ``@register_model("name")`` / ``@register_task("name")``. On a
lookup of a name not yet registered, every module of the family's package (``seisjax.models`` or
``seisjax.tasks``) is imported once, which runs their decorators: nothing needs to be listed here.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable

from seisjax.errors import InputError

__all__ = ["Registry", "MODELS", "TASKS", "register_model", "register_task", "get_model", "get_task"]


class Registry:
    """Name -> object, filled by decorators in the modules of ``package``."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._entries: dict[str, object] = {}
        self._scanned = False

    def register(self, name: str) -> Callable:
        def decorator(obj):
            previous = self._entries.get(name)
            if previous is not None and previous is not obj and (
                    getattr(previous, "__qualname__", None) != getattr(obj, "__qualname__", None)
                    or getattr(previous, "__module__", None) != getattr(obj, "__module__", None)):
                raise ValueError(f"{self.kind} {name!r} registered twice ({previous} and {obj})")
            self._entries[name] = obj
            return obj

        return decorator

    def _scan(self):
        if self._scanned:
            return
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{info.name}")
        self._scanned = True

    def get(self, name: str):
        if name not in self._entries:  # a module named like the entry first, then the whole package
            if importlib.util.find_spec(f"{self.package}.{name}") is not None:
                importlib.import_module(f"{self.package}.{name}")
        if name not in self._entries:
            self._scan()
        try:
            return self._entries[name]
        except KeyError:
            raise InputError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names()) or 'none'})") from None

    def names(self) -> list[str]:
        self._scan()
        return sorted(self._entries)


MODELS = Registry("model", "seisjax.models")
TASKS = Registry("task", "seisjax.tasks")
register_model = MODELS.register
register_task = TASKS.register
get_model = MODELS.get
get_task = TASKS.get
