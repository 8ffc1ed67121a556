"""Registries of methods and evaluators, filled from entry points, plugin files and decorators.

The core never imports ``dilmbench.methods`` or ``dilmbench.evaluators`` by name: built-ins are declared as entry
points in pyproject.toml (groups ``dilmbench.methods`` / ``dilmbench.evaluators``), exactly as a third-party
package would declare its own, and are imported only when first looked up. A local file registers with
``@register_method("name")`` and is loaded by ``--plugin path.py``.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from .errors import DilmbenchError

METHOD_GROUP = "dilmbench.methods"
EVALUATOR_GROUP = "dilmbench.evaluators"


def suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry:
    def __init__(self, kind: str, group: str):
        self.kind, self.group = kind, group
        self._classes: dict[str, type] = {}
        self._entry_points: dict[str, object] | None = None

    def _eps(self) -> dict:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entry_points

    def register(self, name: str, cls: type) -> type:
        if name in self._classes and self._classes[name] is not cls:
            raise DilmbenchError(f"{self.kind} '{name}' is registered twice ({self._classes[name].__module__} and {cls.__module__})")
        cls.name = name
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(set(self._classes) | set(self._eps()))

    def get(self, name: str) -> type:
        if name not in self._classes:
            ep = self._eps().get(name)
            if ep is None:
                raise DilmbenchError(f"unknown {self.kind} '{name}'{suggest(name, self.names())}; known: {', '.join(self.names())}")
            try:
                cls = ep.load()
            except Exception as exc:
                raise DilmbenchError(f"{self.kind} '{name}' (entry point {ep.value}) failed to import: {type(exc).__name__}: {exc}") from exc
            self._classes.setdefault(name, cls)
            cls.name = name
        return self._classes[name]

    def __contains__(self, name: str) -> bool:
        return name in self._classes or name in self._eps()


METHODS = Registry("method", METHOD_GROUP)
EVALUATORS = Registry("evaluator", EVALUATOR_GROUP)


def register_method(name: str):
    def deco(cls):
        return METHODS.register(name, cls)
    return deco


def register_evaluator(name: str):
    def deco(cls):
        return EVALUATORS.register(name, cls)
    return deco


_LOADED_PLUGINS: dict[str, list[str]] = {}


def loaded_plugins() -> tuple[str, ...]:
    """The plugin files this process has loaded (worker processes load them too)."""
    return tuple(_LOADED_PLUGINS)


def load_plugin(path: str | Path) -> list[str]:
    """Import a plugin file (once per process); return the names it registered.

    Errors if it fails to import or registers nothing."""
    path = Path(path)
    if not path.is_file():
        raise DilmbenchError(f"plugin file '{path}' does not exist")
    key = str(path.resolve())
    if key in _LOADED_PLUGINS:
        return _LOADED_PLUGINS[key]
    from .tasks import TASKS

    before = set(METHODS._classes) | set(EVALUATORS._classes) | {f"task:{t}" for t in TASKS}
    mod_name = f"dilmbench_plugin_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except DilmbenchError:
        raise
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise DilmbenchError(f"plugin '{path}' failed to import: {type(exc).__name__}: {exc}") from exc
    added = sorted((set(METHODS._classes) | set(EVALUATORS._classes) | {f"task:{t}" for t in TASKS}) - before)
    source = hashlib.sha256(path.read_bytes()).hexdigest()
    for registry in (METHODS, EVALUATORS):
        for name in added:
            if name in registry._classes:
                registry._classes[name].source_sha256 = source  # joins the identity: edited code redoes its runs
    if not added:
        raise DilmbenchError(f"plugin '{path}' registered nothing: decorate a class with @register_method(\"name\") or "
                             f"@register_evaluator(\"name\"), or call register_task(Task(...))")
    _LOADED_PLUGINS[key] = added
    return added
