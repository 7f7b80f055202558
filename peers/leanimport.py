"""Importing a module of a library without running its packages' ``__init__``.

Some libraries' package ``__init__`` imports everything they have: ``mcp`` its
client runtime, ``redis`` its cluster, sentinel and sync clients. A ``peers
serve`` session that imports the modules it uses by their own paths needs none
of that, and each session pays for it in memory. The packages are registered
bare (their path only) before the import; if the library turns out to need its
``__init__`` after all (a release that reads a package attribute as it loads),
everything imported on the way is dropped and the module is imported whole.

Imports that are not ``peers serve``'s own ask :func:`enabled` first (``peers
serve`` turns it on): elsewhere, another library may import the whole package
later and would find it bare. Standard library only: :mod:`peers.front` uses it
before anything else loads.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

__all__ = [
    "enable",
    "enabled",
    "import_without_inits",
    "resolved_on_first_use",
    "skip_package_inits",
    "standing_in",
]

_enabled = False


def enable() -> None:
    """Mark this process as one that imports lean wherever it can (``peers serve``)."""
    global _enabled
    _enabled = True


def enabled() -> bool:
    """Whether :func:`enable` was called in this process."""
    return _enabled


def skip_package_inits(chain: Sequence[str]) -> bool:
    """Register ``chain`` (a package, then subpackages of it) as bare packages.

    False (nothing changed) when one of them is imported already or not found.
    """
    if any(name in sys.modules for name in chain):
        return False  # already imported whole: nothing to gain
    found: list[ModuleType] = []
    path: list[str] | None = None
    for name in chain:
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.submodule_search_locations is None:
            return False
        found.append(importlib.util.module_from_spec(spec))
        path = list(spec.submodule_search_locations)
    for name, module in zip(chain, found, strict=True):
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
    return True


def import_without_inits(
    name: str,
    chain: Sequence[str],
    meanwhile: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> ModuleType:
    """Import ``name`` with the packages of ``chain`` bare; whole if that fails.

    ``meanwhile`` is entered around the lean attempt only (the front's placeholders
    for modules it need not load). On failure the modules imported meanwhile under
    ``chain[0]`` and ``name``'s top package are dropped before the whole import.
    """
    before = set(sys.modules)
    if not skip_package_inits(chain):
        return importlib.import_module(name)
    try:
        with meanwhile():
            return importlib.import_module(name)
    except Exception:
        roots = (chain[0], name.partition(".")[0])
        for module in set(sys.modules) - before:
            if module in roots or module.startswith(tuple(f"{root}." for root in roots)):
                del sys.modules[module]
        for module in chain:
            sys.modules.pop(module, None)
        return importlib.import_module(name)


class _StandIn(ModuleType):
    """A module's stand-in: the first attribute asked of it imports the real module."""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]  # or the import below would find this stand-in again
        return getattr(importlib.import_module(name), attr)


@contextlib.contextmanager
def resolved_on_first_use(names: Sequence[str]) -> Iterator[None]:
    """Stand-ins for the modules ``names`` while the block imports.

    A module that binds one as it loads (``from importlib import metadata``) and uses
    it later gets the real module's attributes then; one that uses it at once (``from
    importlib.metadata import version``) imports the real module at once. Either way it
    sees the real thing; only a module that is never used is never loaded.
    """
    with standing_in({name: _StandIn(name) for name in names}):
        yield


@contextlib.contextmanager
def standing_in(modules: Mapping[str, ModuleType]) -> Iterator[None]:
    """``modules`` in sys.modules (those not imported yet) while the block runs, gone after."""
    placed = {name: module for name, module in modules.items() if name not in sys.modules}
    sys.modules.update(placed)
    try:
        yield
    finally:
        for name, module in placed.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
