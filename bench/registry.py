"""One kind of registry for methods, evaluators and tasks, filled from entry points, plugin files and decorators.

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
    """name -> a registered object (a method or evaluator class, a Task), from three sources: entry points of
    ``group`` (imported when first looked up), ``register`` (decorators, ``register_task``) and ``--plugin`` files.
    ``check(obj)`` returns why an object does not belong here (None when it does); ``names_it`` sets the object's
    ``name`` to the name it is registered under (classes), else the object must carry that name already (tasks)."""

    def __init__(self, kind: str, group: str, check=None, names_it: bool = True):
        self.kind, self.group, self.check, self.names_it = kind, group, check, names_it
        self._loaded: dict[str, object] = {}
        self._entry_points: dict[str, object] | None = None
        REGISTRIES.append(self)

    def _eps(self) -> dict:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entry_points

    def _admit(self, name: str, obj, where: str):
        why = self.check(obj) if self.check else None
        if why:
            raise DilmbenchError(f"{self.kind} '{name}' ({where}) {why}")
        if self.names_it:
            obj.name = name
        return obj

    def register(self, name: str, obj):
        known = self._loaded.get(name)
        if known is not None and known is not obj and (self.names_it or known != obj):
            where = (f"{known.__module__} and {obj.__module__}" if self.names_it else "with different metadata")
            raise DilmbenchError(f"{self.kind} '{name}' is registered twice ({where})")
        self._loaded[name] = self._admit(name, obj, "registered")
        return obj

    def names(self) -> list[str]:
        """Every name it knows: registered ones and entry points not yet imported."""
        return sorted(set(self._loaded) | set(self._eps()))

    def loaded(self) -> dict[str, object]:
        """The names imported or registered so far, and their objects."""
        return dict(self._loaded)

    def get(self, name: str):
        if name not in self._loaded:
            ep = self._eps().get(name)
            if ep is None:
                raise DilmbenchError(f"unknown {self.kind} '{name}'{suggest(name, self.names())}; "
                                     f"known: {', '.join(self.names())}")
            try:
                obj = ep.load()
            except Exception as exc:
                raise DilmbenchError(f"{self.kind} '{name}' (entry point {ep.value}) failed to import: "
                                     f"{type(exc).__name__}: {exc}") from exc
            self._loaded.setdefault(name, self._admit(name, obj, f"entry point {ep.value} of {self.group}"))
        return self._loaded[name]

    __getitem__ = get

    def unregister(self, name: str) -> None:
        """Forget a registered name (an entry point is imported again on the next lookup)."""
        self._loaded.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._loaded or name in self._eps()

    def __iter__(self):
        return iter(self.names())


# every registry, so that a plugin file's additions can be told whatever it registers (tasks live in dilmbench.tasks,
# which this module does not import)
REGISTRIES: list[Registry] = []

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
_PLUGIN_KEYS: dict[str, list[tuple[str, str]]] = {}  # file -> the (kind, name) it registered


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
    def registered() -> dict:
        return {(r.kind, name): obj for r in REGISTRIES for name, obj in r.loaded().items()}

    before = registered()
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
    new = {key: obj for key, obj in registered().items() if key not in before}
    source = hashlib.sha256(path.read_bytes()).hexdigest()
    for (kind, name), obj in new.items():
        if isinstance(obj, type):  # a method or evaluator class: the file's hash joins its results' identity
            obj.source_sha256 = source
    added = sorted(name if kind != "task" else f"task:{name}" for kind, name in new)
    if not added:
        raise DilmbenchError(f"plugin '{path}' registered nothing: decorate a class with @register_method(\"name\") or "
                             f"@register_evaluator(\"name\"), or call register_task(Task(...))")
    _LOADED_PLUGINS[key] = added
    _PLUGIN_KEYS[key] = list(new)
    return added


def unload_plugin(path: str | Path) -> None:
    """Forget a plugin file and what it registered, so that loading it again imports it again (an edited file in a
    process that keeps running)."""
    key = str(Path(path).resolve())
    _LOADED_PLUGINS.pop(key, None)
    for kind, name in _PLUGIN_KEYS.pop(key, []):
        for registry in REGISTRIES:
            if registry.kind == kind:
                registry.unregister(name)
